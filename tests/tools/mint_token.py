"""Signs a JWT with the local emulator's own Cognito key, for tests/tests/auth.rs.

Reads a JSON object of claims on stdin, prints the token (header {"kid": "dummy", "alg":
"RS256"}, as moto signs its ID tokens) on stdout. The key is loaded exactly as
moto/cognitoidp/models.py loads it, so the token's signature verifies against the pool's
published key set (`/<pool>/.well-known/jwks.json`). This is how the auth test gets tokens
Cognito would never issue (expired, another issuer, another audience) that are nonetheless
correctly signed: the gateway must refuse them for their claims, not their signature.

Run with the project's Python (moto is installed there):
    echo '{"iss": "...", "exp": 0}' | .venv/bin/python tests/tools/mint_token.py
"""

import json
import sys

from joserfc import jwk, jwt
from moto.utilities.utils import load_resource


def main() -> int:
    try:
        claims = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        print(f"mint_token: stdin is not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(claims, dict):
        print("mint_token: stdin must be a JSON object of claims", file=sys.stderr)
        return 2
    # As moto's CognitoIdpUserPool.__init__ does.
    key = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    token = jwt.encode({"kid": "dummy", "alg": "RS256"}, claims, key)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
