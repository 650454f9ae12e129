"""The names ``pebble.common`` has always offered, re-exported from their modules.

``__all__`` is unchanged; the other names stay importable from here.
"""

from concurrent.futures._base import (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING,
                                      RUNNING)

from pebble.consts import CONSTS as CONSTS
from pebble.errors import ProcessExpired, RemoteException, RemoteTraceback
from pebble.errors import format_exception as format_exception
from pebble.errors import rebuild_exception as rebuild_exception
from pebble.errors import rebuild_exception_state as rebuild_exception_state
from pebble.futures import MapFuture, ProcessFuture, ProcessMapFuture
from pebble.pool.base import CLOSED as CLOSED
from pebble.pool.base import CREATED as CREATED
from pebble.pool.base import ERROR as ERROR
from pebble.pool.base import RUNNING_STATE as RUNNING_STATE
from pebble.pool.base import STOPPED as STOPPED
from pebble.pool.mapping import MapError as MapError
from pebble.pool.mapping import run_chunk as run_chunk
from pebble.validators import check_call as check_call
from pebble.validators import check_chunksize as check_chunksize
from pebble.validators import check_initializer as check_initializer
from pebble.validators import check_max_tasks as check_max_tasks
from pebble.validators import check_max_workers as check_max_workers
from pebble.validators import check_timeout as check_timeout

__all__ = ["ProcessExpired", "ProcessFuture", "MapFuture", "ProcessMapFuture",
           "RemoteTraceback", "RemoteException",
           "PENDING", "RUNNING", "FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"]
