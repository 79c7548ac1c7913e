"""smprelay: an SMP relay (``smp-server``) for SimpleX Chat, compatible with simplexmq's files and wire protocol."""

__version__ = "0.1.0"
