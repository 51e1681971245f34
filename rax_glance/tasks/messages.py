"""User-facing task failure messages (doc/api.md section 3) and their error."""

# Import.
UNSUPPORTED_PROPERTY = ('Unsupported element in image_properties, please consult the '
                        'documentation.')
IMPORT_NOT_FOUND = 'Image not found for import. Possible invalid location'

# Export.
NOT_OWNER = 'An image may only be exported by the image owner.'
EXPORT_IMAGE_NOT_FOUND = 'Image not found. Image: %(image)s'
DEACTIVATED = 'A deactivated image cannot be exported. Image: %(image)s'
NOT_ACTIVE = 'Only an active image can be exported. Image: %(image)s'
LICENSED = ('This image cannot be exported because its license does not allow it '
            '(com.rackspace__1__options). Image: %(image)s')
UNSUPPORTED_FORMAT = ('This image cannot be exported: only vhd (XenServer package or bare) '
                      'and raw images can be exported. Image: %(image)s')
CONTAINER_NOT_FOUND = 'Container not found. Container: %(container)s'
CONTAINER_INVALID = ('Invalid container name: it may not contain "/", "?" or ".". '
                     'Container: %(container)s')
SEGMENTS_EXIST = ('Objects named like the segments of the export already exist in user\'s '
                  'container. Container/Object: %(container)s/%(object)s-*')
BAD_IMAGE_DATA = ('The data of this image could not be converted to a VHD for export. '
                  'Image: %(image)s')
QUOTA_EXCEEDED = ('The export does not fit in the quota of user\'s container or account; '
                  'nothing was kept. Container: %(container)s')
OBJECT_EXISTS = ('Object already exists in user\'s container. Container/Object: '
                 '%(container)s/%(object)s')

# Both.
UNEXPECTED = ('An unexpected error occurred while processing the task; nothing was kept. '
              'Please try again later or contact support.')
INTERRUPTED = ('The task was interrupted because the service restarted; nothing was kept. '
               'Please submit the task again.')


class TaskFailed(Exception):
    """A failure the user caused or can act on; `message` is shown in the task as is."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message
