"""The README's main command (`rax-glance-devstack demo`) imports and exports for real."""

import io

from rax_glance.devstack import demo


def test_demo_imports_and_exports(stack_info):
    out = io.StringIO()
    demo.run(stack_info, out)  # raises SystemExit on any mismatch
    text = out.getvalue()
    assert 'image active, vhd/ovf, owner demo, image_type=import' in text
    # Customers cannot PUT image data; the operator uploads the raw demo image's data.
    assert 'customer PUT /file: 403' in text
    assert 'the customer downloaded them: identical' in text
    assert ': verified' in text
    assert 'exported disk content equals the imported disk: yes' in text
