"""``python -m workbench.sae_training``: train SAEs from the command line (see ``--help``)."""

from workbench.sae_training.run import main

raise SystemExit(main())
