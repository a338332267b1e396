"""The service around the actors.

The accept and resume stages, the operators' controls, events, counters, logging and the
process's runtime settings.
"""
