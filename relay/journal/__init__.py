from relay.journal.store import *  # noqa: F403
from relay.journal.store import __all__ as __all__
