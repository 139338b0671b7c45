"""`Part`: the base of the classes that hold one concern of a larger simulator class.

SimExchange, SpotExchange, SimMarket and the protocol servers are each one object whose methods
live in several modules (validation, matching, blocks; publish, WebSocket, REST; ...). Each module
holds one `Part` subclass and the whole class inherits them all; a part reads and writes the
whole's state through `self`. For the type checker a part is `Any`-based, since the attributes
it uses are declared by the whole class (`__init__`) or by a sibling part; at run time it is
a plain `object`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    Part = Any
else:
    Part = object
