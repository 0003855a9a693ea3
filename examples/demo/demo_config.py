# flask_allow demo configuration (loaded with app.config.from_pyfile).
# First match wins; within one dict ALLOW is tried before DENY.
ADDRESS_RESTRICTION = [
    {"DENY": "file:blocklist.txt"},  # a published-style list, relative to the app's root path
    {"ALLOW": ["localhost", "10.0.0.0/8", "192.168.0.0/16"]},
    {"DENY": "all"},  # everything else, IPv4 and IPv6
]
ALLOW_DEFAULT = "deny"
ACCESS_LOG = {"filename": "demo-access.log", "maxBytes": 1048576, "backupCount": 3}
