"""Adversarial tests of the Swift side of tasks (issue 10, class 1 and beyond), on the real
stack whose Swift runs the production proxy pipeline (symlink, slo, dlo, versioned_writes,
copy, bulk, tempurl, staticweb, container/account quotas...).

The attacker is a customer-admin of their own project who controls what is in their own
containers (the objects here are written through the service user on the attacker's
account: Swift's symlink middleware lets any account owner write the same links and
manifests). Each attack must end in exactly the import's not-found message with no image and
no byte of another account in the attacker's hands; the same constructs inside the
attacker's own account still import.
"""

import json

import pytest
import swiftclient

from rax_glance.swift import access
from rax_glance.swift import dlo
from tests.functional import tasks_helpers as th
from tests.functional import vhd_images
from tests.functional.swift_helpers import service_conf
from tests.unit.vhd import builder

MIB = th.MIB
NOT_FOUND = 'Image not found for import. Possible invalid location'
NOT_VHD = 'The image cannot be imported. The file is not a valid VHD.'
STORE_CONTAINER = 'glance-images'  # the dev stack's [swift] swiftdlo_container


def _small_vhd(seed):
    """A fixed VHD under the dev stack's 1 MiB store segment size (one segment)."""
    raw = bytearray(512 * 1024)
    raw[0:16] = (b'%016d' % seed)
    raw[-4096:] = bytes(range(256)) * 16
    return bytes(raw), builder.fixed(bytes(raw))


@pytest.fixture
def victim(glance_factory, swift_factory):
    glance = glance_factory()
    swift = swift_factory(glance.project)
    raw, vhd = _small_vhd(1)
    th.upload(swift, 'private', 'victim.vhd', vhd)
    swift.put_object('private', 'notes.txt', b'not a vhd at all, but it exists')
    return glance, swift


@pytest.fixture
def attacker(glance_factory, swift_factory):
    glance = glance_factory()
    swift = swift_factory(glance.project)
    swift.put_container('c')
    return glance, swift


def _account(glance):
    return 'AUTH_%s' % glance.project


def _symlink(swift, container, name, target, account=None):
    headers = {'X-Symlink-Target': target}
    if account:
        headers['X-Symlink-Target-Account'] = account
    swift.put_object(container, name, b'', headers=headers)


def _refused(glance, import_from):
    """The import fails with exactly the not-found message and leaves no image."""
    before = th.image_ids(glance)
    task = th.run_import(glance, import_from)
    assert task['status'] == 'failure', task
    assert task['message'] == NOT_FOUND, task
    assert task.get('result') in (None, {}), task
    assert th.image_ids(glance) == before
    return task


def _imported(glance, import_from):
    task = th.run_import(glance, import_from)
    assert task['status'] == 'success', task
    return glance.get('/v2/images/%s' % task['result']['image_id']).json()


# -- the production pipeline itself -------------------------------------------------------
def test_swift_runs_the_production_pipeline(stack_info):
    conf = (stack_info['state_dir'] + '/swift/proxy-server.conf')
    text = open(conf).read()
    pipeline = [line for line in text.splitlines() if line.startswith('pipeline = ')][0]
    names = pipeline.split(' = ', 1)[1].split()
    for needed in ('symlink', 'slo', 'dlo', 'versioned_writes', 'copy', 'bulk', 'tempurl',
                   'staticweb', 'container-quotas', 'account-quotas', 'cache'):
        assert needed in names, needed
    assert names.index('slo') < names.index('dlo') < names.index('versioned_writes') \
        < names.index('symlink') < names.index('proxy-server')


def test_a_symlink_leaks_across_accounts_to_the_service_user(victim, attacker):
    """Why the bundle must resolve names itself: Swift follows this link with the reader's
    authority, and tasks read with more authority than their customer."""
    _, vswift = victim
    glance, aswift = attacker
    _symlink(aswift, 'c', 'link', 'private/victim.vhd', _account(victim[0]))
    assert aswift.get_object('c', 'link')[1] == vswift.get_object('private', 'victim.vhd')[1]


# -- class 1: the confused deputy -----------------------------------------------------------
def test_cross_account_symlink_is_refused(victim, attacker):
    glance, aswift = attacker
    _symlink(aswift, 'c', 'link.vhd', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'c/link.vhd')


def test_symlink_chain_leaving_the_account_is_refused(victim, attacker):
    glance, aswift = attacker
    _symlink(aswift, 'c', 'hop1', 'c/hop2')
    _symlink(aswift, 'c', 'hop2', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'c/hop1')


@pytest.fixture
def store_image(stack_info, glance_factory):
    """A licensed image of another customer, stored by the operator in the swiftdlo store
    (the service account's `glance-images`), and a connection to that account."""
    owner = glance_factory()
    image = owner.create_image()  # raw: a fixed VHD's data looks raw to Glance
    owner.upload_as_operator(image['id'], _small_vhd(2)[1],
                             headers={'X-Image-Meta-Store': 'swift'})
    swift = access.ProjectSwift.service_account(service_conf(stack_info['swift']))
    conn = swift.connection()
    yield image['id'], conn, owner
    conn.close()


def test_symlink_into_the_glance_store_is_refused(store_image, attacker):
    image_id, store, _ = store_image
    glance, aswift = attacker
    # The image's only segment and its manifest, in the store's account.
    store.head_object(STORE_CONTAINER, dlo.segment_name(image_id, 1))
    _symlink(aswift, 'c', 'seg', '%s/%s' % (STORE_CONTAINER, dlo.segment_name(image_id, 1)),
             'AUTH_service')
    _refused(glance, 'c/seg')
    _symlink(aswift, 'c', 'manifest', '%s/%s' % (STORE_CONTAINER, image_id), 'AUTH_service')
    _refused(glance, 'c/manifest')


def test_store_project_customer_admin_cannot_import_from_the_store(store_image,
                                                                    glance_factory):
    image_id, _, _ = store_image
    insider = glance_factory(project='service')
    _refused(insider, '%s/%s' % (STORE_CONTAINER, dlo.segment_name(image_id, 1)))
    _refused(insider, '%s/%s' % (STORE_CONTAINER, image_id))


def test_store_project_customer_admin_cannot_export_into_the_store(store_image,
                                                                    glance_factory):
    image_id, store, _ = store_image
    insider = glance_factory(project='service')
    image = insider.create_image()
    insider.upload_as_operator(image['id'], b'\x01' * (MIB + 5))
    before = sorted(o['name'] for o in store.get_container(STORE_CONTAINER,
                                                           full_listing=True)[1])
    task = th.run_export(insider, image['id'], container=STORE_CONTAINER)
    assert task['status'] == 'failure', task
    assert task['message'] == 'Container not found. Container: %s' % STORE_CONTAINER
    after = sorted(o['name'] for o in store.get_container(STORE_CONTAINER,
                                                          full_listing=True)[1])
    assert after == before


def test_slo_with_a_foreign_segment_is_refused(victim, attacker):
    glance, aswift = attacker
    raw, vhd = _small_vhd(3)
    # A valid SLO of the attacker's own segment...
    etag = aswift.put_object('c', 'seg', vhd)
    aswift.put_object('c', 'slo.vhd', json.dumps([
        {'path': '/c/seg', 'etag': etag, 'size_bytes': len(vhd)}]),
        query_string='multipart-manifest=put')
    # ...whose segment then becomes a link into the victim's account (SLO checks segments
    # only when the manifest is written).
    _symlink(aswift, 'c', 'seg', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'c/slo.vhd')


def test_dlo_with_a_foreign_segment_is_refused(victim, attacker):
    glance, aswift = attacker
    _symlink(aswift, 'c', 'parts/0001', 'private/victim.vhd', _account(victim[0]))
    aswift.put_object('c', 'dlo.vhd', b'', headers={'X-Object-Manifest': 'c/parts/'})
    _refused(glance, 'c/dlo.vhd')


def test_dlo_naming_a_container_the_account_lacks_is_refused(victim, attacker):
    glance, aswift = attacker
    # The victim has `private`; the attacker does not: a DLO reads its own account only.
    aswift.put_object('c', 'dlo.vhd', b'', headers={'X-Object-Manifest': 'private/victim'})
    _refused(glance, 'c/dlo.vhd')


def test_versioned_object_turned_into_a_foreign_link_is_refused(victim, attacker):
    glance, aswift = attacker
    aswift.put_container('ver', headers={'X-Versions-Enabled': 'true'})
    aswift.put_object('ver', 'disk.vhd', _small_vhd(4)[1])
    _symlink(aswift, 'ver', 'disk.vhd', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'ver/disk.vhd')


def test_legacy_versions_location_link_is_refused(victim, attacker):
    glance, aswift = attacker
    aswift.put_container('archive')
    aswift.put_container('hist', headers={'X-History-Location': 'archive'})
    aswift.put_object('hist', 'disk.vhd', _small_vhd(5)[1])
    _symlink(aswift, 'hist', 'disk.vhd', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'hist/disk.vhd')


def test_no_existence_oracle_for_other_accounts(victim, attacker):
    """A foreign object that exists (not a VHD), one that does not, a foreign container
    that does not exist: the same message; only the caller's own objects get VHD errors."""
    glance, aswift = attacker
    account = _account(victim[0])
    _symlink(aswift, 'c', 'exists', 'private/notes.txt', account)
    _symlink(aswift, 'c', 'missing', 'private/nothing-here', account)
    _symlink(aswift, 'c', 'nocontainer', 'nope/nothing-here', account)
    messages = {_refused(glance, 'c/%s' % n)['message']
                for n in ('exists', 'missing', 'nocontainer', 'absent')}
    assert messages == {NOT_FOUND}
    aswift.put_object('c', 'own-notes.txt', b'not a vhd at all, but it exists')
    task = th.run_import(glance, 'c/own-notes.txt')
    assert task['status'] == 'failure' and task['message'] == NOT_VHD, task


@pytest.mark.parametrize('suffix', ['?symlink=get', '?multipart-manifest=get',
                                    '?temp_url_sig=0&temp_url_expires=9999999999',
                                    '%3Fsymlink=get', '#frag'])
def test_query_strings_in_import_from_are_names_not_requests(victim, attacker, suffix):
    """`import_from` is always an object name: no query string reaches Swift's
    middlewares (symlink, slo, tempurl) through it."""
    glance, aswift = attacker
    _symlink(aswift, 'c', 'link.vhd', 'private/victim.vhd', _account(victim[0]))
    _refused(glance, 'c/link.vhd' + suffix)


@pytest.mark.parametrize('import_from', ['c/../private/victim.vhd', '../private/victim.vhd',
                                         '/private/victim.vhd', 'private', 'c/./x'])
def test_path_tricks_in_import_from_are_refused(victim, attacker, import_from):
    _refused(attacker[0], import_from)


# -- what the customer may do in their own account still works ------------------------------
def test_own_symlink_dlo_slo_and_versions_still_import(attacker):
    glance, aswift = attacker
    raw, vhd = th.sample_disk(size=4 * MIB, seed=11)
    th.upload(aswift, 'c', 'dlo.vhd', vhd, how='dlo', segment=MIB)
    th.upload(aswift, 'c', 'slo.vhd', vhd, how='slo', segment=MIB)
    aswift.put_container('other')
    _symlink(aswift, 'other', 'link.vhd', 'c/slo.vhd')
    _symlink(aswift, 'other', 'link2.vhd', 'c/dlo.vhd', _account(glance))
    aswift.put_container('ver', headers={'X-Versions-Enabled': 'true'})
    aswift.put_object('ver', 'disk.vhd', b'old data')
    aswift.put_object('ver', 'disk.vhd', vhd)
    for name in ('c/dlo.vhd', 'c/slo.vhd', 'other/link.vhd', 'other/link2.vhd',
                 'ver/disk.vhd'):
        image = _imported(glance, name)
        assert image['status'] == 'active' and image['owner'] == glance.project
        package = glance.get('/v2/images/%s/file' % image['id']).content
        disk = vhd_images.vhd_to_raw(vhd_images.package_members(package)['0.vhd'])
        assert disk[:len(raw)] == raw, name


# -- export --------------------------------------------------------------------------------
@pytest.fixture
def raw_image(attacker):
    glance, aswift = attacker
    image = glance.create_image()
    glance.upload_as_operator(image['id'], b'\x02' * (3 * MIB))
    aswift.put_container('exports')
    return image['id']


def test_export_target_symlink_is_an_existing_object(victim, attacker, raw_image):
    """A link at the export's name counts as an object, wherever it points (HEAD never
    follows it: whether a foreign target exists is no one's business) and nothing is
    written through or over it."""
    glance, aswift = attacker
    name = '%s.vhd' % raw_image
    _symlink(aswift, 'exports', name, 'private/%s' % name, _account(victim[0]))
    task = th.run_export(glance, raw_image)
    assert task['status'] == 'failure', task
    assert task['message'] == ("Object already exists in user's container. "
                               "Container/Object: exports/%s" % name)
    headers = aswift.head_object('exports', name, query_string='symlink=get')
    assert headers['x-symlink-target'] == 'private/%s' % name
    assert [o['name'] for o in aswift.get_container('exports')[1]] == [name]
    with pytest.raises(swiftclient.ClientException) as err:
        victim[1].head_object('private', name)
    assert err.value.http_status == 404


def test_export_segment_name_symlink_is_never_written_through(victim, attacker, raw_image):
    glance, aswift = attacker
    vglance, vswift = victim
    name = '%s.vhd' % raw_image
    seg = dlo.segment_name(name, 1)
    vswift.put_container('landing')
    _symlink(aswift, 'exports', seg, 'landing/%s' % seg, _account(vglance))
    task = th.run_export(glance, raw_image)
    assert task['status'] == 'failure', task
    assert task['message'] == ("Objects named like the segments of the export already exist "
                               "in user's container. Container/Object: exports/%s-*" % name)
    assert [o['name'] for o in aswift.get_container('exports')[1]] == [seg]
    assert vswift.get_container('landing')[1] == []


def test_swift_put_replaces_a_symlink_instead_of_writing_through_it(victim, attacker):
    """What a race (a link created between the check and the write) could do at most:
    Swift's PUT replaces the link itself, in the writer's own account."""
    _, vswift = victim
    _, aswift = attacker
    _symlink(aswift, 'c', 'target', 'private/victim.vhd', _account(victim[0]))
    before = vswift.get_object('private', 'victim.vhd')[1]
    aswift.put_object('c', 'target', b'written by the export')
    assert vswift.get_object('private', 'victim.vhd')[1] == before
    assert aswift.get_object('c', 'target', query_string='symlink=get')[1] == \
        b'written by the export'


def test_export_cleanup_never_deletes_through_a_symlink(stack_info, victim, attacker):
    """The cleanup of a failed export (manifest, then everything under the segment prefix)
    deletes links themselves, never their targets in another account."""
    _, vswift = victim
    glance, aswift = attacker
    name = 'x.vhd'
    _symlink(aswift, 'c', name, 'private/victim.vhd', _account(victim[0]))
    _symlink(aswift, 'c', dlo.segment_name(name, 1), 'private/notes.txt',
             _account(victim[0]))
    own = access.ProjectSwift.for_project(glance.project, service_conf(stack_info['swift']))
    assert dlo.delete_dlo(own, 'c', name) == 2
    assert [o['name'] for o in aswift.get_container('c')[1]] == []
    vswift.head_object('private', 'victim.vhd')
    vswift.head_object('private', 'notes.txt')


def test_export_refused_by_a_container_quota_leaves_nothing(attacker, raw_image):
    glance, aswift = attacker
    # Below one segment (1 MiB here): quotas compare with cached usage, so concurrent
    # segment PUTs may each fit a larger quota.
    aswift.post_container('exports', headers={'X-Container-Meta-Quota-Bytes': str(MIB // 2)})
    task = th.run_export(glance, raw_image)
    assert task['status'] == 'failure', task
    assert task['message'] == ("The export does not fit in the quota of user's container "
                               "or account; nothing was kept. Container: exports"), task
    assert aswift.get_container('exports', full_listing=True)[1] == []


# -- class 7: a damaged image's error names no internal location ----------------------------
def test_damaged_store_image_error_names_no_location(store_image):
    image_id, store, owner = store_image
    store.put_object(STORE_CONTAINER, image_id + '-zz', b'stray')
    resp = owner.get('/v2/images/%s/file' % image_id)
    assert resp.status_code == 503, resp.status_code
    assert STORE_CONTAINER not in resp.text and image_id not in resp.text, resp.text
    assert 'damaged' in resp.text
    store.delete_object(STORE_CONTAINER, image_id + '-zz')
