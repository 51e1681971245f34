"""`[rax_api]` options: the bundle's guards in front of Glance's image API."""

from oslo_config import cfg

GROUP = 'rax_api'

OPTS = [
    cfg.IntOpt('max_image_body_bytes', default=1048576, min=1024,
               help='Largest body of an image PATCH (a JSON-patch document) or image '
                    'create (POST /v2/images) the bundle accepts, in bytes, whoever sends it. '
                    'A larger one answers 413 before Glance reads it. The default leaves room '
                    'for many large custom properties in one request.'),
]


def register(conf=None):
    conf = conf or cfg.CONF
    conf.register_opts(OPTS, group=GROUP)
    return conf


def list_opts():
    return [(GROUP, OPTS)]
