"""Development tools, not the service: the contact-center emulator and the fleet simulator."""
