"""Plugins: the pluggy manager that loads built-ins, entry points and local files (``manager``), the contract
every plugin is checked against (``contract``), option docs read from Options classes (``optiondocs``) and
``probe new-plugin``'s scaffold."""
