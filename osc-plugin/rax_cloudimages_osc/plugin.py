"""The `openstack.cli.extension` module: what osc-lib/openstackclient ask of a plugin."""

from osc_lib import utils

from rax_cloudimages_osc import client

API_NAME = 'cloud_images'
API_VERSION_OPTION = 'os_cloud_images_api_version'
DEFAULT_API_VERSION = '2'
API_VERSIONS = {'2': 'rax_cloudimages_osc.client.CloudImagesClient'}


def make_client(instance):
    """The Cloud Images client on the session, endpoint and options openstackclient built."""
    return client.CloudImagesClient(instance.sdk_connection.image)


def build_option_parser(parser):
    parser.add_argument(
        '--os-cloud-images-api-version', metavar='<cloud-images-api-version>',
        default=utils.env('OS_CLOUD_IMAGES_API_VERSION'),
        help='Cloud Images API version, default=%s (Env: OS_CLOUD_IMAGES_API_VERSION)'
             % DEFAULT_API_VERSION)
    return parser
