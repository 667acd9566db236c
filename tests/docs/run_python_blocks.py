"""Run the ```python blocks of one doc page in order, in one namespace, as the doc tests do.

``python run_python_blocks.py BLOCKS.json RESULT.json``: BLOCKS.json is ``{"doc": path, "blocks":
[{"line": fence line, "code": text}, ...]}``. Each block is compiled under the doc's path with its
doc line numbers, so a traceback points into the Markdown file. RESULT.json is rewritten after every
block: ``{"done": [fence lines], "failed": fence line or null, "error": traceback text}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(blocks_file: str, result_file: str) -> int:
    spec = json.loads(Path(blocks_file).read_text())
    result = {"done": [], "failed": None, "error": None}
    namespace = {"__name__": "__doc_example__"}
    for block in spec["blocks"]:
        # the fence is on doc line L, so the block's first line is L + 1
        code = compile("\n" * block["line"] + block["code"], spec["doc"], "exec")
        try:
            exec(code, namespace)
        except BaseException:  # noqa: BLE001 -- report whatever the example raised, SystemExit included
            result.update(failed=block["line"], error=traceback.format_exc())
            Path(result_file).write_text(json.dumps(result))
            return 1
        result["done"].append(block["line"])
        Path(result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
