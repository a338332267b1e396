"""Pure policy: no I/O, no clock, no threads, no logging. Actors run these stages."""
