"""The dashboard's screens: the dashboard itself, the runs list, dialogs, help."""
