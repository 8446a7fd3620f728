"""What every process shares: its settings (``runtime.settings``), its logging and metrics
(``runtime.logs``) and how it starts and refuses a broken configuration (``runtime.startup``)."""
