"""flask_allow's built-in behaviour, each a default plugin written against the public API."""
