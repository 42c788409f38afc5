"""Write docs/SUPPORT_MATRIX.md from the kit's field table (providers_app/kit/fields.py).

Run after changing a rule: ``.venv/bin/python scripts/support_matrix.py``. A test
(tests/providers/test_field_rules.py) fails while the committed file and the table differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers_app.kit.fields import render_markdown  # noqa: E402

TARGET = ROOT / "docs" / "SUPPORT_MATRIX.md"


def main() -> None:
    TARGET.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
