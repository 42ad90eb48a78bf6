"""Who may do what: session and admin tokens (tokens.py) and sign-in of candidates and
supervisors (login.py)."""
