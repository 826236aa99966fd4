"""The script mitmproxy loads: `mitmdump -s addon/client_credentials.py`.

mitmproxy puts this file's folder on `sys.path` for every script and library in the process,
so the folder holds this file and one package named after the product, nothing with a
generic name. The package's `mitm` subpackage is the mitmproxy side; the rest knows nothing
of mitmproxy.
"""

from mitm_oauth.mitm.addon import ClientCredentials

addons = [ClientCredentials()]
