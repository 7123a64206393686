"""Stage 0, core: what every other stage may use and that knows nothing of models. Errors a user
can hit (``errors``), atomic file writes (``io``), estimates with intervals (``stats``), names of
files, folders and environment variables (``constants``), the table of scenario conditions
(``conditions``) and the table of position rules (``positions``)."""
