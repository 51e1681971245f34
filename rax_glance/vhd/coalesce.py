"""Coalescing a chain of VHDs (leaf first) into the content of one disk.

::

    chain = open_chain(['0.vhd', '1.vhd', '2.vhd'])    # leaf ... base
    content = ChainContent(chain)
    stream = content_module.dynamic_stream(content)     # one dynamic VHD

The chain is checked first: every disk but the base is a differencing disk
whose parent id is the unique id of the next one; the base is fixed or
dynamic; no unique id appears twice (a cycle) and the depth is capped.
Content follows the differencing rules: for each sector the newest disk
whose block is allocated with the sector's bitmap bit set wins; otherwise
the sector reads as zero.  Disks of the chain may differ in size and
block size; the leaf's size is the disk's size.

Two passes over the (seekable) files: sector bitmaps first, to know which
2 MiB output blocks hold data, then the data, one output block at a time.
"""

from rax_glance import errors
from rax_glance.vhd import format as fmt
from rax_glance.vhd import reader as vhd_reader
from rax_glance.vhd import validate
from rax_glance.vhd import writer

BLOCK_SIZE = writer.BLOCK_SIZE
MAX_CHAIN_DEPTH = 32


def check_chain(chain, max_depth=MAX_CHAIN_DEPTH):
    """Raise :class:`~rax_glance.errors.ChainError` for a broken chain."""
    if not chain:
        raise errors.ChainError('empty chain')
    if len(chain) > max_depth:
        raise errors.ChainError('chain of %d disks is deeper than %d'
                                % (len(chain), max_depth))
    seen = {}
    for position, disk in enumerate(chain):
        if disk.unique_id in seen:
            raise errors.ChainError(
                'cycle: %s has the same unique id as %s'
                % (disk.name, seen[disk.unique_id]))
        seen[disk.unique_id] = disk.name
        is_base = position == len(chain) - 1
        if disk.disk_type == fmt.DISK_DIFFERENCING:
            if is_base:
                raise errors.ChainError('missing parent of %s' % disk.name)
            parent = chain[position + 1]
            if disk.header.parent_unique_id != parent.unique_id:
                raise errors.ChainError(
                    'parent id of %s does not match the unique id of %s'
                    % (disk.name, parent.name))
        elif not is_base:
            raise errors.ChainError('%s is not a differencing disk but has '
                                    'a parent in the chain' % disk.name)


def open_chain(paths, limits=None, max_depth=MAX_CHAIN_DEPTH):
    """Open and check VHD files given leaf first; returns ``VHDFile``s."""
    if len(paths) > max_depth:
        raise errors.ChainError('chain of %d disks is deeper than %d'
                                % (len(paths), max_depth))
    limits = limits or validate.UNLIMITED
    chain = []
    try:
        for position, path in enumerate(paths):
            chain.append(vhd_reader.VHDFile.open_path(
                path, limits=limits, leaf=position == 0))
        check_chain(chain, max_depth)
    except BaseException:
        for disk in chain:
            disk.close()
        raise
    return chain


class Layer:
    """One disk of the chain, read in byte ranges of the virtual disk.

    Only the sectors a disk holds are read (bitmap first, then its runs),
    straight into the output buffer: memory does not grow with the depth
    of the chain.
    """

    def __init__(self, disk):
        self.disk = disk
        self.size = disk.virtual_size
        self.fixed = disk.disk_type == fmt.DISK_FIXED
        self.block_size = disk.block_size

    def runs(self, start, end):
        """``(virtual_offset, length, file_offset)`` this disk holds."""
        end = min(end, self.size)
        if start >= end:
            return []
        if self.fixed:
            return [(start, end - start, start)]
        out = []
        block = self.block_size
        data_skip = self.disk.header.bitmap_size
        for index in range(start // block, (end - 1) // block + 1):
            base = index * block
            runs = self.disk.read_bitmap_runs(index)
            if not runs:
                continue
            file_base = self.disk.block_file_offset(index) + data_skip
            for first, count in runs:
                run_start = max(base + first * fmt.SECTOR, start)
                run_end = min(base + (first + count) * fmt.SECTOR, end)
                if run_start < run_end:
                    out.append((run_start, run_end - run_start,
                                file_base + run_start - base))
        return out

    def overlay(self, start, end, buffer):
        """Copy what this disk holds in ``[start, end)`` into ``buffer``."""
        view = memoryview(buffer)
        for offset, length, file_offset in self.runs(start, end):
            self.disk.read_into(file_offset,
                                view[offset - start:offset - start + length])


class ChainContent:
    """The virtual disk of a checked chain, as writer content."""

    def __init__(self, chain):
        check_chain(chain)
        self.chain = chain
        self.virtual_size = chain[0].virtual_size
        self._layers = [Layer(disk) for disk in reversed(chain)]
        self._order = None

    def _range(self, index):
        start = index * BLOCK_SIZE
        return start, min(start + BLOCK_SIZE, self.virtual_size)

    @property
    def block_order(self):
        if self._order is None:
            order = []
            for index in range(-(-self.virtual_size // BLOCK_SIZE)):
                start, end = self._range(index)
                for layer in self._layers:
                    if layer.fixed:
                        data = bytearray(end - start)
                        layer.overlay(start, end, data)
                        if not fmt.is_zero(data):
                            order.append(index)
                            break
                    elif layer.runs(start, end):
                        order.append(index)
                        break
            self._order = order
        return self._order

    def iter_block_data(self):
        for index in self.block_order:
            start, end = self._range(index)
            buffer = bytearray(end - start)
            # Base first, so that newer disks overwrite older ones.
            for layer in self._layers:
                layer.overlay(start, end, buffer)
            yield buffer

    def close(self):
        for disk in self.chain:
            disk.close()
