"""doc/operators-policy.md's permission matrix must match what the policy code decides."""

from pathlib import Path

from rax_glance import policies_doc

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'doc' / 'operators-policy.md'


def test_operator_doc_matrix_is_generated_from_current_code():
    assert policies_doc.main(['--check', str(DOC)]) == 0, (
        'run: .venv/bin/python -m rax_glance.policies_doc --update doc/operators-policy.md')


def test_check_detects_a_hand_edited_cell(tmp_path):
    edited = DOC.read_text().replace('| `modify_image` | O L |', '| `modify_image` | O L S |', 1)
    assert edited != DOC.read_text()
    stale = tmp_path / 'doc.md'
    stale.write_text(edited)
    assert policies_doc.main(['--check', str(stale)]) == 1
    assert policies_doc.main(['--update', str(stale)]) == 0
    assert stale.read_text() == DOC.read_text()


def test_matrix_rows_reflect_key_decisions():
    text = policies_doc.generate(str(ROOT / 'etc' / 'property-protections.conf'))
    rows = {line.split('|')[2].strip(): line for line in text.splitlines()
            if line.startswith('| `') and line.count('|') > 12}
    cells = [c.strip() for c in rows['`download_image`'].split('|')[3:12]]
    # identity:user-admin, admin, cloudImages:admin, creator, observer x2, operator, service, none
    assert cells == ['O', 'O', 'O', '-', '-', '-', 'O L S P X', 'O L S P X', '-']
    cells = [c.strip() for c in rows['`get_image`'].split('|')[3:12]]
    assert cells == ['O L S P'] * 6 + ['O L S P X', '-', '-']
