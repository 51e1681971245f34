"""GET /v2/info/stores/detail with the swiftdlo store enabled (issue 12 item 7): stock
glance-api 33 answers 500 there; the bundle's cloudimages-stores filter answers as Glance would."""

from tests.functional import clients


def test_operator_gets_every_store_with_its_properties(glance_factory):
    operator = glance_factory(roles=clients.OPERATOR_ROLES)
    resp = operator.get('/v2/info/stores/detail')
    assert resp.status_code == 200, resp.text
    stores = {s['id']: s for s in resp.json()['stores']}
    assert set(stores) == {'local', 'swift'}
    assert stores['local']['type'] == 'file' and stores['local']['default'] == 'true'
    assert set(stores['local']['properties']) == {'data_dir', 'chunk_size',
                                                  'thin_provisioning'}
    swift = stores['swift']
    assert swift['type'] == 'swiftdlo'
    assert swift['description'] == 'Swift (verified Dynamic Large Objects)'
    assert swift['properties']['container'] == 'glance-images'
    assert swift['properties']['large_object_chunk_size'] == 1024 * 1024
    assert swift['weight'] == 0


def test_customers_are_refused_as_glance_refuses_them(glance_factory):
    for roles in ('cloudImages:admin', 'admin', 'identity:user-admin', 'cloudImages:observer'):
        customer = glance_factory(roles=roles)
        resp = customer.get('/v2/info/stores/detail')
        assert resp.status_code == 403, (roles, resp.text)
        assert 'Traceback' not in resp.text
        # The plain list stays Glance's own, open to customers.
        listed = customer.get('/v2/info/stores')
        assert listed.status_code == 200
        assert {s['id'] for s in listed.json()['stores']} == {'local', 'swift'}


def test_other_methods_and_paths_go_to_glance(glance_factory):
    operator = glance_factory(roles=clients.OPERATOR_ROLES)
    assert operator.post('/v2/info/stores/detail', json={}).status_code in (404, 405)
    assert operator.get('/v2/info/import').status_code == 200
