"""Subscriptions: channels, playlists, feeds and folders checked on a schedule, their new entries added to a
rolling batch of their own.

``subs`` is the stored list (one JSON file in the home, changed under a file lock by any process);
``sources`` says what a URL or folder lists today; ``checker`` turns one check into new items of the
subscription's batch; ``service`` is the loop the owning engine runs (the app, ``tubemill watch run``).
"""
