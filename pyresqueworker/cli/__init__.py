"""The command lines, thin layers over the library objects below: ``pyresque-work``
(``work``), ``pyresque-scheduler`` (``scheduler``), ``pyresque`` (``admin``) and
``pyresque-demo`` (``demo``).

May import every layer below it (``web``, ``worker``, ``client``, ``jobs``, ``protocol``).
"""
