"""tripline: IoT sensor alerts into safe, proactive outbound calls."""
