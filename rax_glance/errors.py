"""Typed errors of the image engine (``rax_glance.vhd``, ``rax_glance.ova``).

Every problem that bad input can cause is raised as an :class:`ImageError`
subclass carrying:

``code``
    the Cloud Images error code (an ``int``);
``message``
    the exact user-facing Cloud Images message for that code (what a failed
    import task shows);
``detail``
    what exactly is wrong and, when known, at which byte offset: for logs and
    the ``rax-glance-vhd`` CLI, never shown to API users.

Codes (from the Cloud Images documentation, plus two of our own):

=====  ==================================================================
111    any other structural problem ("unspecified problem"), among them data a
       dynamic VHD holds under clear sector bitmap bits (qemu shows it, the
       VHD specification reads zeros)
396    the file is not a VHD (no footer, bad footer checksum, bad size)
413    the virtual size exceeds the limit
523    the disk is neither fixed nor dynamic
609    the physical (file) size exceeds the limit
614    the unique id of the VHD is all zeros
721    the VHD is a differencing disk (it has a parent)
901    *rax-glance*: a Windows image (Microsoft License Mobility), or a disk
       the Windows check cannot judge (it fails closed: caps reached,
       tables it can no longer read; see ``rax_glance.windows``)
112    *rax-glance*: a broken XenServer image package or VHD chain; only
       met on export of stored images, so users never see it on import
=====  ==================================================================

This module is pure: it imports nothing outside the standard library.
"""

GIB = 1 << 30

_PREFIX = 'The image cannot be imported. '

MESSAGES = {
    111: _PREFIX + ('There is an unspecified problem with your VHD that caused '
                    'it to fail our validation checks.'),
    112: 'The image package or its chain of virtual disks is not valid.',
    396: _PREFIX + 'The file is not a valid VHD.',
    413: _PREFIX + ('The virtual size of the disk exceeds the {limit} '
                    'limit.'),
    523: _PREFIX + 'Only fixed or dynamic disks may be imported.',
    609: _PREFIX + ('The physical size of the disk exceeds the {limit} '
                    'limit.'),
    614: _PREFIX + 'The internal UUID of the VHD is all zeros.',
    721: _PREFIX + ('Your VHD has a parent disk. You can only import a '
                    'stand-alone VHD.'),
    901: _PREFIX + ('Windows images cannot be imported because of Microsoft '
                    'License Mobility restrictions.'),
}


def format_limit(limit_bytes):
    """Render a size limit the way Cloud Images messages do ("40GB")."""
    if limit_bytes % GIB == 0:
        return '%dGB' % (limit_bytes // GIB)
    return '%.1fGB' % (limit_bytes / GIB)


class ImageError(Exception):
    """Base of every error that bad image input can cause."""

    code = 111

    def __init__(self, detail, offset=None):
        self.detail = detail
        self.offset = offset
        super().__init__(self.describe())

    @property
    def message(self):
        return MESSAGES[self.code]

    def describe(self):
        """One line for logs and the CLI: code, defect and offset."""
        where = '' if self.offset is None else ' (at offset %d)' % self.offset
        return '%d: %s%s' % (self.code, self.detail, where)


class StructureError(ImageError):
    """Any structural defect without a more specific code (111)."""

    code = 111


class NotVHDError(ImageError):
    """The data is not a VHD at all (396)."""

    code = 396


class SizeLimitError(ImageError):
    """Base of the two size limits; ``limit`` is in bytes."""

    def __init__(self, detail, limit, offset=None):
        self.limit = limit
        super().__init__(detail, offset)

    @property
    def message(self):
        return MESSAGES[self.code].format(limit=format_limit(self.limit))


class VirtualSizeError(SizeLimitError):
    """The virtual size is over the configured limit (413)."""

    code = 413


class PhysicalSizeError(SizeLimitError):
    """The file is bigger than the configured limit (609)."""

    code = 609


class DiskTypeError(ImageError):
    """The disk type is neither fixed, dynamic nor differencing (523)."""

    code = 523


class NullUniqueIdError(ImageError):
    """The footer's unique id is all zeros (614)."""

    code = 614


class HasParentError(ImageError):
    """A differencing disk where a stand-alone disk is required (721)."""

    code = 721


class WindowsImageError(ImageError):
    """The disk holds Windows, which may not be imported (901)."""

    code = 901


class PackageError(ImageError):
    """A broken or abusive XenServer image package (112)."""

    code = 112


class ChainError(ImageError):
    """A broken chain of differencing disks (112)."""

    code = 112
