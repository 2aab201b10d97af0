"""Review, between the store and dispatch: the sign-off chains a category requires (`chain`), the rules
every door obeys (`rules`: separation of duties, the author, override and retract roles, no lowered
chain), reviewers' accounts with their tokens and web sessions (`accounts`), the editor's note on a
rejection (`returned`), the confidentiality screen every revision passes (`screen`: classified and internal
markings, resident ID and mobile numbers, configured terms, in every field as readers see it: `seen`), the
wording dictionary (`wording`, with the shipped `wording.yaml`), and the link check the daemon runs on
revisions in review (`links`). An approval plans the revision's deliveries through dispatch's outbox. May
import the core's leaf modules, config, store and dispatch.outbox; never lag or the doors in app/.
"""
