import logging

from lowshot._dist import quiet_other_ranks

log = logging.getLogger("lowshot")
quiet_other_ranks(log)  # in a distributed run, only rank 0 talks
