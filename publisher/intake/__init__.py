"""Intake, the first step of the flow: the item file format (`items`: Markdown with YAML front matter
read into a `ParsedItem`, or an `ItemFileError` an editor can act on; `text`: the characters it may
carry), the queue folder (`queue`: claim by atomic rename, read, store the revision, archive or reject
with a note; `files`: names, reading without following symlinks, hashing) and the inotify watcher
(`watch`: a file is read once its writer has closed it). May import the core's leaf modules, config,
store and review (the screen runs as a revision is stored); never dispatch, lag or the doors in app/.
"""
