"""Configuration: conf/default.toml holds every default, conf/schema.py declares them."""
