"""tripline: IoT sensor alerts turned into safe, proactive outbound calls.

The design card keeps actors/, pipeline/, conf/, supervisor.py and messages.py at the top of
the repository; tripline/actors, tripline/pipeline, tripline/conf, tripline/supervisor.py and
tripline/messages.py are links to them, so everything is imported and installed under this
one name (tripline.actors, tripline.supervisor, ...) and nothing else lands in site-packages.
"""
