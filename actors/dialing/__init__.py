"""The dialer's loop side, in layers.

Records at the bottom; the last checks (gate), placing calls (place) and raising tasks (tasks)
above them; DialJobs (jobs) runs them on the loop. Nothing here touches the dialer actor's
state: results go back to it as messages.
"""
