"""Review, between the store and dispatch: the sign-off chains a category requires (`chain`), the rules
every door obeys (`rules`: separation of duties, the author, override and retract roles, no lowered
chain), reviewers' accounts with their tokens and web sessions (`accounts`), the editor's note on a
rejection (`returned`) and the confidentiality screen every revision passes (`screen`: classified
markings, resident ID numbers, mobile numbers, configured terms). An approval plans the revision's
deliveries through dispatch's outbox. May import the core's leaf modules, config, store and
dispatch.outbox; never lag or the doors in app/.
"""
