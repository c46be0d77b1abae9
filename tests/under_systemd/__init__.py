"""probe's .deb under a real systemd: Debian containers booted with systemd-nspawn (see machine.py)."""
