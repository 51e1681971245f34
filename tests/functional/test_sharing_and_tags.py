"""Sharing and tags are stock Glance (doc/api.md section 5) and must keep working under the
Cloud Images policy: members pending/accepted/rejected, list visibility, who may change a
member's status; tags up to 255 characters, idempotent add."""

import pytest

from tests.functional import clients


@pytest.fixture
def people(glance_factory):
    producer_project, consumer_project = clients.new_project(), clients.new_project()
    return {
        'producer_admin': glance_factory(producer_project, 'cloudImages:admin'),
        'producer_creator': glance_factory(producer_project, 'cloudImages:creator'),
        'consumer_admin': glance_factory(consumer_project, 'identity:user-admin'),
        'consumer_creator': glance_factory(consumer_project, 'cloudImages:creator'),
        'consumer_observer': glance_factory(consumer_project, 'cloudImages:observer'),
        'stranger_admin': glance_factory(clients.new_project(), 'admin'),
    }


def _listed(client, query=''):
    resp = client.get('/v2/images' + query)
    assert resp.status_code == 200, resp.text
    return {image['id'] for image in resp.json()['images']}


def _member_url(image_id, member):
    return '/v2/images/%s/members/%s' % (image_id, member)


def test_share_accept_reject_and_revoke(people):
    producer, creator = people['producer_admin'], people['producer_creator']
    consumer = people['consumer_admin']
    image = creator.create_image(name='to share')  # a creator creates and shares
    image_id, member = image['id'], consumer.project

    resp = creator.post('/v2/images/%s/members' % image_id, json={'member': member})
    assert resp.status_code == 200 and resp.json()['status'] == 'pending', resp.text
    assert creator.post('/v2/images/%s/members' % image_id,
                        json={'member': member}).status_code == 409

    # Pending: not in the consumer's list, discoverable through member_status, gettable.
    assert image_id not in _listed(consumer)
    assert image_id in _listed(consumer, '?visibility=shared&member_status=pending')
    assert consumer.get('/v2/images/%s' % image_id).status_code == 200

    # Only a consumer customer-admin may answer; the producer cannot answer for it.
    for client in (people['consumer_creator'], people['consumer_observer']):
        resp = client.put(_member_url(image_id, member), json={'status': 'accepted'})
        assert resp.status_code == 403, resp.text
    resp = producer.put(_member_url(image_id, member), json={'status': 'accepted'})
    assert resp.status_code == 403, resp.text
    resp = people['stranger_admin'].put(_member_url(image_id, member),
                                        json={'status': 'accepted'})
    assert resp.status_code == 404, resp.text
    assert producer.get(_member_url(image_id, member)).json()['status'] == 'pending'

    resp = consumer.put(_member_url(image_id, member), json={'status': 'accepted'})
    assert resp.status_code == 200 and resp.json()['status'] == 'accepted', resp.text
    assert image_id in _listed(consumer)
    assert image_id in _listed(people['consumer_observer'])
    assert producer.get(_member_url(image_id, member)).json()['status'] == 'accepted'
    # A member sees itself, not the producer's other members.
    assert [m['member_id'] for m in
            consumer.get('/v2/images/%s/members' % image_id).json()['members']] == [member]

    resp = consumer.put(_member_url(image_id, member), json={'status': 'rejected'})
    assert resp.status_code == 200 and resp.json()['status'] == 'rejected', resp.text
    assert image_id not in _listed(consumer)
    assert image_id in _listed(consumer, '?visibility=shared&member_status=rejected')
    resp = consumer.put(_member_url(image_id, member), json={'status': 'bogus'})
    assert resp.status_code == 400, resp.text

    # The consumer cannot re-share; the stranger sees nothing; the producer's creator cannot
    # revoke, its customer-admin can, and then the consumer loses the image.
    resp = consumer.post('/v2/images/%s/members' % image_id,
                         json={'member': people['stranger_admin'].project})
    assert resp.status_code == 403, resp.text
    assert people['stranger_admin'].get('/v2/images/%s' % image_id).status_code == 404
    assert creator.delete(_member_url(image_id, member)).status_code == 403
    assert producer.delete(_member_url(image_id, member)).status_code == 204
    assert consumer.get('/v2/images/%s' % image_id).status_code == 404
    assert image_id not in _listed(consumer, '?visibility=shared&member_status=all')


def test_private_images_have_no_members(people):
    producer = people['producer_admin']
    image = producer.create_image(visibility='private')
    resp = producer.post('/v2/images/%s/members' % image['id'],
                         json={'member': people['consumer_admin'].project})
    assert resp.status_code == 403, resp.text


def test_tags_long_idempotent_filterable(people):
    admin, creator = people['producer_admin'], people['producer_creator']
    image_id = admin.create_image()['id']
    longest, too_long = 't' * 255, 'u' * 256
    for _ in range(2):  # adding the same tag twice is fine and keeps one copy
        assert admin.put('/v2/images/%s/tags/%s' % (image_id, longest)).status_code == 204
    assert admin.get('/v2/images/%s' % image_id).json()['tags'] == [longest]
    resp = admin.put('/v2/images/%s/tags/%s' % (image_id, too_long))
    assert resp.status_code == 400, resp.text
    assert image_id in _listed(admin, '?tag=' + longest)

    resp = admin.patch('/v2/images/%s' % image_id,
                       [{'op': 'replace', 'path': '/tags', 'value': ['a', 'b', 'a']}])
    assert resp.status_code == 200 and sorted(resp.json()['tags']) == ['a', 'b'], resp.text
    assert creator.put('/v2/images/%s/tags/c' % image_id).status_code == 403
    assert creator.delete('/v2/images/%s/tags/a' % image_id).status_code == 403
    assert admin.delete('/v2/images/%s/tags/a' % image_id).status_code == 204
    assert admin.delete('/v2/images/%s/tags/a' % image_id).status_code == 404
    assert admin.get('/v2/images/%s' % image_id).json()['tags'] == ['b']
