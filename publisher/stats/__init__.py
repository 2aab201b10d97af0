"""Disclosure statistics: the annual report on government information disclosure and the districts'
bimonthly count, read from the store (publisher/store/stats_reads.py). May import the leaves, config,
store and lag (working days, publisher/lag/workdays.py); the command line and the dashboard show them."""
