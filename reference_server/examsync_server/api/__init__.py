"""HTTP endpoints, one blueprint per audience. Handlers are thin: decode, call, encode."""
