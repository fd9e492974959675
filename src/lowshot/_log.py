import logging

log = logging.getLogger("lowshot")
