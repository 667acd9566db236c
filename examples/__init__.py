"""Runnable examples (not installed with the package): run them from the repository root, e.g.
``python examples/bmi_host_loop.py --checkpoint CKPT --store STORE``; coupling YAMLs refer to
``examples.new_component:SlabOcean``, importable when the repository root is the working directory
or on ``PYTHONPATH``. See docs/host_model.md and docs/components.md."""
