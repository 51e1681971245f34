"""Pure VHD engine: streaming validation and reading, writing, coalescing.

Imports nothing from OpenStack.  Entry points:

* :class:`StreamReader` (``reader``): one-pass validating reader over a
  non-seekable stream; ``extents()`` yields the allocated content.
* :class:`Limits` (``validate``): size limits and switches of validation.
* :class:`VHDFile` (``reader``): random access for chain members.
* :func:`open_chain`, :class:`ChainContent` (``coalesce``).
* :func:`content_from_stream`, :func:`dynamic_stream`, :func:`fixed_stream`,
  :func:`raw_stream`, :class:`IterStream` (``content``): conversions whose
  results are file-likes with ``read(n)`` and a known ``size``.
* :class:`DynamicWriter`, :class:`FixedWriter` (``writer``).

Bad input raises only :class:`rax_glance.errors.ImageError` subclasses.
"""

from rax_glance.vhd.coalesce import ChainContent  # noqa: F401
from rax_glance.vhd.coalesce import check_chain  # noqa: F401
from rax_glance.vhd.coalesce import open_chain  # noqa: F401
from rax_glance.vhd.content import IterStream  # noqa: F401
from rax_glance.vhd.content import RawFileContent  # noqa: F401
from rax_glance.vhd.content import SpooledContent  # noqa: F401
from rax_glance.vhd.content import content_from_stream  # noqa: F401
from rax_glance.vhd.content import dynamic_stream  # noqa: F401
from rax_glance.vhd.content import fixed_stream  # noqa: F401
from rax_glance.vhd.content import raw_stream  # noqa: F401
from rax_glance.vhd.reader import StreamReader  # noqa: F401
from rax_glance.vhd.reader import VHDFile  # noqa: F401
from rax_glance.vhd.reader import validate_stream  # noqa: F401
from rax_glance.vhd.validate import Limits  # noqa: F401
from rax_glance.vhd.writer import DynamicWriter  # noqa: F401
from rax_glance.vhd.writer import FixedWriter  # noqa: F401
