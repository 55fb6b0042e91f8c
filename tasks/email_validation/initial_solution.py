def is_valid_email(address):
    # Deliberately naive starting point: one @, something before it, a dot after it.
    if address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return len(local) > 0 and "." in domain
