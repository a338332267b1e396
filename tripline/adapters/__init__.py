"""Adapters: tripline's side of what it talks to.

Redis (keys, scripts and the transport), the CRM, the do-not-call list, the shared rate
budget, the dead-letter stream, and the contact-center backends.
"""
