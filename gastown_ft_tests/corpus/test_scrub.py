"""Labeled cases for the scrub engine: what must vanish, what must survive, which kinds are counted.

Every secret below is generated here from its published shape with a fixed seed: none is a real
credential. `CASES` is plain data so `bench/corpus_scrub.py` can check them too.
"""

from __future__ import annotations

import base64
import json
import random
import string
import struct
from collections import Counter

import pytest

from gastown_ft.corpus.scrub import Scrubber, ScrubResult, placeholder, scrub_jsonl

RNG = random.Random(20261130)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
URLSAFE = ALNUM + "-_"


def chars(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def mixed(alphabet: str, n: int) -> str:
    """Random characters with at least one upper, one lower and one digit (as real tokens have)."""
    while True:
        s = chars(alphabet, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wrap(s: str, width: int, sep: str = "\n") -> str:
    return sep.join(s[i : i + width] for i in range(0, len(s), width))


# ---- fake secrets, by shape ----------------------------------------------------------------------
def hf() -> str:
    return "hf_" + mixed(string.ascii_letters + string.digits, 34)


def ghp(kind: str = "p") -> str:
    return f"gh{kind}_" + mixed(ALNUM, 36)


def github_pat() -> str:
    return "github_pat_" + mixed(ALNUM, 22) + "_" + mixed(ALNUM, 59)


def akia(prefix: str = "AKIA") -> str:
    return prefix + chars(UPPER_DIGITS, 16)


def aws_secret() -> str:
    return mixed(ALNUM + "/+", 40)


def anthropic() -> str:
    return "sk-ant-api03-" + mixed(URLSAFE, 93) + "AA"


def openai_proj() -> str:
    return "sk-proj-" + mixed(URLSAFE, 58) + "T3BlbkFJ" + mixed(URLSAFE, 58)


def openai_legacy() -> str:
    return "sk-" + mixed(ALNUM, 20) + "T3BlbkFJ" + mixed(ALNUM, 20)


def slack_bot() -> str:
    return f"xoxb-{chars(string.digits, 12)}-{chars(string.digits, 13)}-{mixed(ALNUM, 24)}"


def slack_webhook() -> str:
    return f"https://hooks.slack.com/services/T{chars(UPPER_DIGITS, 8)}/B{chars(UPPER_DIGITS, 8)}/{mixed(ALNUM, 24)}"


def stripe(prefix: str = "sk_live_") -> str:
    return prefix + "51" + mixed(ALNUM, 40)


def google() -> str:
    return "AIza" + mixed(URLSAFE, 35)


def npm() -> str:
    return "npm_" + mixed(ALNUM, 36)


def pypi() -> str:
    return "pypi-AgEIcHlwaS5vcmc" + mixed(URLSAFE, 132)


def glpat() -> str:
    return "glpat-" + mixed(URLSAFE, 20)


def pem_key(kind: str = "RSA ") -> str:
    body = base64.b64encode(b"\x30\x82\x04\xa3\x02\x01\x00\x02\x82\x01\x01\x00" + RNG.randbytes(600)).decode()
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{wrap(body, 64)}\n-----END {kind}PRIVATE KEY-----"


def openssh_key() -> str:
    def fld(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    raw = b"openssh-key-v1\x00" + fld(b"none") + fld(b"none") + fld(b"") + struct.pack(">I", 1)
    raw += fld(b"\x00\x00\x00\x0bssh-ed25519" + fld(RNG.randbytes(32))) + fld(RNG.randbytes(140))
    body = base64.b64encode(raw).decode()
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{wrap(body, 70)}\n-----END OPENSSH PRIVATE KEY-----"


def putty_key() -> str:
    pub = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + RNG.randbytes(32)).decode()
    priv = base64.b64encode(b"\x00\x00\x00\x20" + RNG.randbytes(32)).decode()
    mac = RNG.randbytes(32).hex()
    return (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: ed25519-key-20260130\n"
        f"Public-Lines: 2\n{wrap(pub, 64)}\nPrivate-Lines: 1\n{priv}\nPrivate-MAC: {mac}"
    )


def jwt() -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    iat = 1767000000 + RNG.randrange(5_000_000)
    payload = {"sub": "svc-ledger", "scope": "ingest:write", "iat": iat}
    body = b64url(json.dumps(payload, separators=(",", ":")).encode())
    return f"{head}.{body}.{b64url(RNG.randbytes(32))}"


def password() -> str:
    word = RNG.choice(["Quartz", "Lantern", "Otter", "Saffron", "Meridian", "Tundra", "Velvet", "Cobalt"])
    return word + chars(ALNUM, 6) + RNG.choice("!#%*") + chars(string.digits, 3)


def generic() -> str:
    return mixed(ALNUM, 32)


# Values used by several cases (kept in variables so cases can list them under "vanish").
HF, GHP, GHO, GHS, GHU, GHR, PAT = hf(), ghp("p"), ghp("o"), ghp("s"), ghp("u"), ghp("r"), github_pat()
AKIA1, ASIA1, AWS_SECRET1, AWS_SECRET2 = akia(), akia("ASIA"), aws_secret(), aws_secret()
ANT, OAI_PROJ, OAI_OLD = anthropic(), openai_proj(), openai_legacy()
SLACK, HOOK = slack_bot(), slack_webhook()
STRIPE_LIVE, STRIPE_RK, STRIPE_TEST = stripe(), stripe("rk_live_"), stripe("sk_test_")
GOOGLE, NPM, PYPI, GLPAT = google(), npm(), pypi(), glpat()
PEM, PEM_EC, OPENSSH, PUTTY = pem_key(), pem_key("EC "), openssh_key(), putty_key()
PEM_BODY_LINE = PEM.splitlines()[3]
OPENSSH_BODY_LINE = OPENSSH.splitlines()[2]
JWT1, JWT2 = jwt(), jwt()
PW = [password() for _ in range(12)]
GEN = [generic() for _ in range(6)]
BEARER_OPAQUE = mixed(ALNUM, 40)
BASIC = base64.b64encode(f"deploy:{PW[9]}".encode()).decode()
GCP_KEY_ESCAPED = pem_key("").replace("\n", "\\n")

# ---- labeled cases: (name, text, must vanish, must survive, expected kinds) --------------------------
CASES: list[tuple[str, str, list[str], list[str], set[str]]] = [
    # -- tokens
    (
        "hf_token_in_bead_description",
        f'Found a hardcoded token in scripts/upload.py: `HF_TOKEN = "{HF}"`. Rotate it, then '
        f'bd close gt-8fk2 --reason "rotated".',
        [HF],
        ["scripts/upload.py", "HF_TOKEN", "gt-8fk2", 'bd close gt-8fk2 --reason "rotated"'],
        {"hf_token"},
    ),
    (
        "github_classic_in_env_tool_result",
        f"GT_ROLE=polecat\nGT_RIG=gastown\nGITHUB_TOKEN={GHP}\nHOME=/home/alice\nSHELL=/bin/bash\n",
        [GHP, "alice"],
        ["GT_ROLE=polecat", "GT_RIG=gastown", "GITHUB_TOKEN=", "HOME=/home/<USER>", "SHELL=/bin/bash"],
        {"github_token", "user"},
    ),
    (
        "github_fine_grained_in_shell_history",
        f"gh auth login --with-token <<< {PAT}\ngt sling gt-4k2m gastown",
        [PAT],
        ["gh auth login --with-token <<< ", "gt sling gt-4k2m gastown"],
        {"github_token"},
    ),
    (
        "github_oauth_in_json_config",
        json.dumps({"github.com": [{"user": "nux-bot", "oauth_token": GHO, "git_protocol": "https"}]}),
        [GHO],
        ['"oauth_token"', '"git_protocol": "https"', "nux-bot"],
        {"github_token"},
    ),
    (
        "github_app_tokens_in_log",
        f"refinery: pushed with installation token {GHS}; user token {GHU}; refresh {GHR}",
        [GHS, GHU, GHR],
        ["refinery: pushed with installation token"],
        {"github_token"},
    ),
    (
        "github_token_in_git_remote_url",
        f"git remote set-url origin https://x-access-token:{GHP}@github.com/steveyegge/gastown.git",
        [GHP],
        ["https://x-access-token:", "@github.com/steveyegge/gastown.git"],
        {"github_token"},
    ),
    (
        "aws_access_key_in_claude_md",
        f"## Deploy\nThe staging bucket uses key id `{AKIA1}` (see mol-dog-backup). Never commit it.",
        [AKIA1],
        ["## Deploy", "mol-dog-backup", "Never commit it."],
        {"aws_access_key"},
    ),
    (
        "aws_credentials_file",
        f"[default]\naws_access_key_id = {AKIA1}\naws_secret_access_key = {AWS_SECRET1}\nregion = us-east-1\n",
        [AKIA1, AWS_SECRET1],
        ["[default]", "aws_access_key_id = ", "region = us-east-1"],
        {"aws_access_key", "aws_secret_key"},
    ),
    (
        "aws_sts_json_output",
        json.dumps(
            {
                "Credentials": {
                    "AccessKeyId": ASIA1,
                    "SecretAccessKey": AWS_SECRET2,
                    "Expiration": "2026-03-01T00:00:00Z",
                }
            },
            indent=2,
        ),
        [ASIA1, AWS_SECRET2],
        ['"Expiration": "2026-03-01T00:00:00Z"', '"AccessKeyId"'],
        {"aws_access_key", "aws_secret_key"},
    ),
    (
        "anthropic_key_export",
        f'export ANTHROPIC_API_KEY="{ANT}"\ngt up --rig gastown',
        [ANT, "sk-ant-"],
        ["export ANTHROPIC_API_KEY=", "gt up --rig gastown"],
        {"anthropic_key"},
    ),
    (
        "openai_project_key_yaml",
        f"providers:\n  openai:\n    api_key: {OAI_PROJ}\n    model: gpt-4o\n",
        [OAI_PROJ],
        ["providers:", "api_key: ", "model: gpt-4o"],
        {"openai_key"},
    ),
    (
        "openai_legacy_key_in_transcript",
        f"I'll set the key for the eval harness: OPENAI_API_KEY={OAI_OLD} promptfoo eval",
        [OAI_OLD],
        ["OPENAI_API_KEY=", "promptfoo eval"],
        {"openai_key"},
    ),
    (
        "slack_bot_token_formula_var_default",
        f'formula = "mol-notify"\n[vars.slack_token]\ndescription = "Bot token"\ndefault = "{SLACK}"\n',
        [SLACK],
        ['formula = "mol-notify"', "[vars.slack_token]", 'description = "Bot token"'],
        {"slack_token"},
    ),
    (
        "slack_webhook_in_mail",
        f'gt mail send mayor/ -s "alerts wired" -m "posting to {HOOK} from the deacon"',
        [HOOK, HOOK.rsplit("/", 1)[1]],
        ['gt mail send mayor/ -s "alerts wired"', "from the deacon"],
        {"slack_webhook"},
    ),
    (
        "stripe_keys_dotenv",
        f"STRIPE_SECRET_KEY={STRIPE_LIVE}\nSTRIPE_RESTRICTED={STRIPE_RK}\nSTRIPE_TEST_KEY={STRIPE_TEST}\n",
        [STRIPE_LIVE, STRIPE_RK, STRIPE_TEST],
        ["STRIPE_SECRET_KEY=", "STRIPE_RESTRICTED=", "STRIPE_TEST_KEY="],
        {"stripe_key"},
    ),
    (
        "google_api_key_json",
        json.dumps({"maps": {"apiKey": GOOGLE, "region": "us"}}),
        [GOOGLE],
        ['"region": "us"'],
        {"google_api_key"},
    ),
    (
        "npm_token_npmrc",
        f"//registry.npmjs.org/:_authToken={NPM}\nregistry=https://registry.npmjs.org/\n",
        [NPM],
        ["//registry.npmjs.org/:_authToken=", "registry=https://registry.npmjs.org/"],
        {"npm_token"},
    ),
    (
        "pypi_token_pypirc",
        f"[pypi]\nusername = __token__\npassword = {PYPI}\n",
        [PYPI],
        ["[pypi]", "username = __token__"],
        {"pypi_token"},
    ),
    (
        "gitlab_token_cli",
        f"glab auth login --token {GLPAT} --hostname gitlab.example.com",
        [GLPAT],
        ["glab auth login --token ", "--hostname gitlab.example.com"],
        {"gitlab_token"},
    ),
    # -- private keys, JWTs
    (
        "pem_rsa_key_in_bead_description",
        f"Polecat found this in fixtures/tls/server.key:\n\n{PEM}\n\nFiled as gt-9x2q (P0).",
        [PEM_BODY_LINE, "BEGIN RSA PRIVATE KEY", "END RSA PRIVATE KEY"],
        ["Polecat found this in fixtures/tls/server.key:", "Filed as gt-9x2q (P0)."],
        {"private_key"},
    ),
    (
        "openssh_key_tool_result_cat",
        f"$ cat ~/.ssh/id_ed25519\n{OPENSSH}\n$ ssh-add -l",
        [OPENSSH_BODY_LINE, "OPENSSH PRIVATE KEY"],
        ["$ cat ~/.ssh/id_ed25519", "$ ssh-add -l"],
        {"private_key"},
    ),
    (
        "ec_key_yaml_block",
        "tls:\n  key: |\n    " + PEM_EC.replace("\n", "\n    ") + "\n  cert: /etc/ssl/server.crt\n",
        [PEM_EC.splitlines()[2], "EC PRIVATE KEY"],
        ["tls:", "cert: /etc/ssl/server.crt"],
        {"private_key"},
    ),
    (
        "gcp_service_account_escaped_key",
        '{"type": "service_account", "project_id": "gt-ledger", "private_key_id": "'
        + "ab12" * 10
        + '", "private_key": "'
        + GCP_KEY_ESCAPED
        + '\\n", "client_email": "ledger@gt-ledger.iam.gserviceaccount.com"}',
        [GCP_KEY_ESCAPED[40:120], "BEGIN PRIVATE KEY", "ledger@gt-ledger.iam.gserviceaccount.com"],
        ['"project_id": "gt-ledger"', '"private_key_id": "' + "ab12" * 10],
        {"private_key", "email"},
    ),
    (
        "putty_key_file",
        f"Windows crew member pasted deploy.ppk:\n{PUTTY}\nthen ran pageant.",
        [PUTTY.splitlines()[-2], PUTTY.splitlines()[-1][13:], "PuTTY-User-Key-File-3"],
        ["Windows crew member pasted deploy.ppk:", "then ran pageant."],
        {"private_key"},
    ),
    (
        "jwt_in_curl_bearer",
        f'curl -s -H "Authorization: Bearer {JWT1}" https://ledger.example.com/v1/ingest',
        [JWT1, JWT1.split(".")[2]],
        ['curl -s -H "Authorization: Bearer ', "https://ledger.example.com/v1/ingest"],
        {"jwt"},
    ),
    (
        "jwt_in_json_config",
        json.dumps({"service": "ledger", "session": JWT2, "ttl": 3600}),
        [JWT2],
        ['"service": "ledger"', '"ttl": 3600'],
        {"jwt"},
    ),
    (
        "opaque_bearer_token",
        f"curl -H 'Authorization: Bearer {BEARER_OPAQUE}' http://127.0.0.1:8080/api/health",
        [BEARER_OPAQUE],
        ["Authorization: Bearer ", "http://127.0.0.1:8080/api/health"],
        {"bearer_token"},
    ),
    (
        "basic_auth_header",
        f"Authorization: Basic {BASIC}\nHost: ci.internal",
        [BASIC],
        ["Authorization: Basic ", "Host: ci.internal"],
        {"password"},
    ),
    # -- passwords
    (
        "password_in_database_url",
        f"DATABASE_URL=postgres://mokafor:{PW[0]}@db.quillmesh.io:5432/ledger?sslmode=require",
        [PW[0], "mokafor"],
        ["DATABASE_URL=postgres://", "@db.quillmesh.io:5432/ledger?sslmode=require"],
        {"password", "user"},
    ),
    (
        "password_in_url_generic_user_kept",
        f"redis-cli -u redis://default:{PW[1]}@cache.harborlight.dev:6379/0 ping",
        [PW[1]],
        ["redis://default:", "@cache.harborlight.dev:6379/0 ping"],
        {"password"},
    ),
    (
        "password_cli_flag_equals",
        f"dolt sql-server --user=root --password={PW[2]} --port 3307",
        [PW[2]],
        ["dolt sql-server --user=root --password=", "--port 3307"],
        {"password"},
    ),
    (
        "password_cli_flag_space",
        f"$ gt rig add ledger --db-password {PW[3]} --prefix lg",
        [PW[3]],
        ["gt rig add ledger --db-password ", "--prefix lg"],
        {"password"},
    ),
    (
        "password_env_assignment",
        f"DB_HOST=db.internal\nDB_PASSWORD={PW[4]}\nDB_POOL=8\n",
        [PW[4]],
        ["DB_HOST=db.internal", "DB_PASSWORD=", "DB_POOL=8"],
        {"password"},
    ),
    (
        "password_json_key",
        json.dumps({"dolt": {"user": "root", "password": PW[5], "host": "127.0.0.1"}}),
        [PW[5]],
        ['"user": "root"', '"host": "127.0.0.1"', '"password": "'],
        {"password"},
    ),
    (
        "password_yaml_key",
        f"database:\n  user: ledger\n  password: {PW[6]}  # rotated 2026-02\n  port: 5432\n",
        [PW[6]],
        ["user: ledger", "# rotated 2026-02", "port: 5432"],
        {"password"},
    ),
    (
        "password_go_struct_and_python_default",
        f'cfg := Config{{User: "svc", Password: "{PW[7]}"}}\n@dataclass\nclass C:\n    password: str = "{PW[8]}"\n',
        [PW[7], PW[8]],
        ['User: "svc"', "@dataclass", "class C:"],
        {"password"},
    ),
    (
        "password_echoed_later_in_doc",
        f"MYSQL_PWD={PW[10]}\n...\nthen I ran mysql -u root with {PW[10]} and it worked",
        [PW[10]],
        ["MYSQL_PWD=", "then I ran mysql -u root with", "and it worked"],
        {"password"},
    ),
    (
        "scrubadub_credential_pair",
        f"Witness note — login: mkowalczyk password: {PW[11]}\nnext patrol in 5m",
        [PW[11], "mkowalczyk"],
        ["Witness note — login: ", "next patrol in 5m"],
        {"password", "user"},
    ),
    # -- generic high-entropy values under key-like names
    (
        "generic_api_key_export",
        f'export LEDGER_API_KEY="{GEN[0]}"\nexport GT_ROLE=witness',
        [GEN[0]],
        ["export LEDGER_API_KEY=", "export GT_ROLE=witness"],
        {"generic_secret"},
    ),
    (
        "generic_client_secret_python",
        f'client_id = "gt-ledger-prod"\nclient_secret = "{GEN[1]}"\n',
        [GEN[1]],
        ['client_id = "gt-ledger-prod"', "client_secret = "],
        {"generic_secret"},
    ),
    (
        "generic_secret_yaml_and_header",
        f"webhook:\n  signing_secret: {GEN[2]}\nhttp:\n  headers:\n    X-Api-Key: {GEN[3]}\n",
        [GEN[2], GEN[3]],
        ["signing_secret: ", "X-Api-Key: ", "webhook:"],
        {"generic_secret"},
    ),
    (
        "generic_token_json_escaped_in_jsonl",
        '{"new_value":"{\\"auth_token\\":\\"' + GEN[4] + '\\",\\"status\\":\\"hooked\\"}"}',
        [GEN[4]],
        ['\\"status\\":\\"hooked\\"', "auth_token"],
        {"generic_secret"},
    ),
    (
        "generic_private_key_toml",
        f'[signing]\nprivate_key = "{GEN[5]}"\nalgorithm = "ed25519"\n',
        [GEN[5]],
        ["[signing]", 'algorithm = "ed25519"'],
        {"generic_secret"},
    ),
    # -- personal data
    (
        "email_bead_owner_json",
        '{"id":"gt-00us","owner":"mara.okafor@quillmesh.io","created_by":"gastown/polecats/dementus"}',
        ["mara.okafor@quillmesh.io", "quillmesh.io", "mara.okafor"],
        ['"id":"gt-00us"', '"created_by":"gastown/polecats/dementus"'],
        {"email"},
    ),
    (
        "email_git_trailers",
        "fix(refinery): retry merge (gt-4kq)\n\nSigned-off-by: Tobias Lindqvist <tlindqvist@harborlight.dev>\n"
        "Co-Authored-By: Claude <noreply@anthropic.com>",
        ["tlindqvist@harborlight.dev", "harborlight.dev"],
        ["fix(refinery): retry merge (gt-4kq)", "Co-Authored-By: Claude <noreply@anthropic.com>"],
        {"email"},
    ),
    (
        "email_json_escapes",
        '{"text": "cc:\\nines.haddad@fernwood-analytics.com and \\u003ckwame@tallgrass-labs.co\\u003e"}',
        ["ines.haddad@fernwood-analytics.com", "kwame@tallgrass-labs.co"],
        ['{"text": "cc:\\n', "\\u003c"],
        {"email"},
    ),
    (
        "phone_us_parenthesized",
        "Escalation: page the overseer at (415) 555-0142 if the deacon is down > 10m.",
        ["(415) 555-0142", "555-0142"],
        ["Escalation: page the overseer at", "if the deacon is down > 10m."],
        {"phone"},
    ),
    (
        "phone_us_plus_one_and_dots",
        "gt mail send mayor/ -s 'contact' -m 'Yuki: +1 312-555-0199, backup 646.555.0173'",
        ["312-555-0199", "646.555.0173"],
        ["gt mail send mayor/ -s 'contact' -m 'Yuki: "],
        {"phone"},
    ),
    (
        "phone_international",
        "London on-call: +44 20 7946 0321; Berlin: +49 30 901820",
        ["+44 20 7946 0321", "7946 0321", "+49 30 901820"],
        ["London on-call:", "; Berlin:"],
        {"phone"},
    ),
    (
        "home_path_in_transcript_cwd",
        '{"type":"user","cwd":"/home/alice/gt/gastown/polecats/nux","gitBranch":"polecat/nux-gt-4k2"}',
        ["/home/alice", "alice"],
        ['"cwd":"/home/<USER>/gt/gastown/polecats/nux"', '"gitBranch":"polecat/nux-gt-4k2"'],
        {"user"},
    ),
    (
        "home_path_macos",
        "Error: open /Users/tobias/code/gt/.beads/issues.jsonl: permission denied",
        ["tobias"],
        ["Error: open /Users/<USER>/code/gt/.beads/issues.jsonl: permission denied"],
        {"user"},
    ),
    (
        "claude_project_dir_encoded",
        "~/.claude/projects/-home-ksato-gt-gastown-polecats-nux/550e8400-e29b-41d4-a716-446655440000.jsonl",
        ["ksato"],
        [
            "~/.claude/projects/-home-<USER>-gt-gastown-polecats-nux/550e8400-e29b-41d4-a716-446655440000.jsonl"
        ],
        {"user"},
    ),
    (
        "claude_project_dir_dotted_user",
        "cwd /home/mara.okafor/gt and sessions in ~/.claude/projects/-home-mara-okafor-gt/",
        ["mara.okafor", "mara-okafor"],
        ["/home/<USER>/gt", "~/.claude/projects/-home-<USER>-gt/"],
        {"user"},
    ),
    (
        "user_env_and_prompt",
        "USER=dvolkov\nLOGNAME=dvolkov\nPWD=/tmp/work\ndvolkov@devbox:~/gt$ gt status",
        ["dvolkov"],
        ["USER=<USER>", "LOGNAME=<USER>", "PWD=/tmp/work", "@devbox:~/gt$ gt status"],
        {"user"},
    ),
    (
        "windows_user_path",
        r"Cannot find C:\Users\hnakashima\gt\mayor\town.json",
        ["hnakashima"],
        [r"C:\Users\<USER>\gt\mayor\town.json"],
        {"user"},
    ),
    (
        "url_login_without_password",
        "git clone https://cferreira@bitbucket.org/team/ledger.git",
        ["cferreira"],
        ["git clone https://", "@bitbucket.org/team/ledger.git"],
        {"user"},
    ),
    (
        "public_ipv4_in_log",
        "[deacon] dial tcp 34.102.7.19:443: i/o timeout; retrying via 10.0.0.7 and 127.0.0.1",
        ["34.102.7.19"],
        [":443: i/o timeout", "10.0.0.7", "127.0.0.1"],
        {"ip"},
    ),
    (
        "public_ipv4_yaml_hosts",
        "hosts:\n  - 52.14.201.3\n  - 192.168.1.20\n  - 104.18.2.77\n",
        ["52.14.201.3", "104.18.2.77"],
        ["hosts:", "192.168.1.20"],
        {"ip"},
    ),
    (
        "public_ipv4_after_url_credentials_and_ssh_login",
        f"mirror: mysql://dolt_mirror:{PW[9]}@212.128.136.171:3306/hq\nssh root@35.215.137.152 'gt doctor'",
        [PW[9], "212.128.136.171", "35.215.137.152"],
        ["mysql://dolt_mirror:", ":3306/hq", "ssh root@", "'gt doctor'"],
        {"password", "ip"},
    ),
    (
        "env_tool_result_many_kinds",
        f"HOME=/home/sadeyemi\nAWS_ACCESS_KEY_ID={AKIA1}\nANTHROPIC_API_KEY={ANT}\nGH_TOKEN={GHO}\n"
        f"HF_TOKEN={HF}\nGT_ROLE=crew\nEDITOR=vim\n",
        ["sadeyemi", AKIA1, ANT, GHO, HF],
        ["HOME=/home/<USER>", "AWS_ACCESS_KEY_ID=", "GT_ROLE=crew", "EDITOR=vim"],
        {"user", "aws_access_key", "anthropic_key", "github_token", "hf_token"},
    ),
    (
        "hf_token_as_url_password",
        f"git push https://fthorsen:{HF}@huggingface.co/spaces/gt/demo main",
        [HF, "fthorsen"],
        ["git push https://", "@huggingface.co/spaces/gt/demo main"],
        {"hf_token", "user"},
    ),
    # -- must survive (no findings, text unchanged)
    (
        "neg_bead_ids",
        "Blocked by gt-0anl and bd-a3f2.1; see hq-mayor, gt-wisp-abc, gt-abc.3, hq-cv-7kx.",
        [],
        [],
        set(),
    ),
    (
        "neg_git_shas",
        "merged a3f2b1c into main (9f86d081884c7d659a2feaa0c55ad015a3bf4f1b), parent 1234567",
        [],
        [],
        set(),
    ),
    (
        "neg_uuids",
        '{"sessionId":"550e8400-e29b-41d4-a716-446655440000","uuid":"12345678-1234-5678-1234-567812345678"}',
        [],
        [],
        set(),
    ),
    (
        "neg_sha256_checksums",
        '"content_hash":"cd03d59856eff39fb6745881a8d106cde607c76ea8c3a8d2bfa050cbe017a117" sha256:'
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        [],
        [],
        set(),
    ),
    (
        "neg_loopback_private_addresses",
        "listen 127.0.0.1:8080 and [::1]:8080, localhost:3000, 0.0.0.0:5432, 10.0.0.7, 192.168.1.20, "
        "172.16.4.2, 169.254.169.254, 255.255.255.255",
        [],
        [],
        set(),
    ),
    (
        "neg_env_var_names",
        "Set ANTHROPIC_API_KEY in your shell; the polecat reads $GITHUB_TOKEN and ${HF_TOKEN}. "
        "export ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY\nGITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
        "ANTHROPIC_API_KEY=\npassword: ${DB_PASSWORD}",
        [],
        [],
        set(),
    ),
    (
        "neg_formula_names_and_toml",
        'formula = "mol-polecat-work"\nextends = ["mol-deacon-patrol"]\n[vars.base_branch]\ndefault = "main"\n'
        '[[steps]]\nid = "load-context"\nneeds = ["mol-sync-workspace"]\n',
        [],
        [],
        set(),
    ),
    (
        "neg_commands",
        'bd close gt-abc --reason "done"\ngt mail send mayor/ -s "Status" -m "ok"\ngt sling gt-xyz gastown\n'
        "bd update gt-4k2 --status in_progress --assignee gastown/polecats/nux",
        [],
        [],
        set(),
    ),
    (
        "neg_agent_addresses",
        "gastown/polecats/nux handed off to gastown/crew/max; mayor/ and deacon/ notified; "
        "beads/witness and gastown/refinery idle",
        [],
        [],
        set(),
    ),
    (
        "neg_timestamps",
        "2026-02-28T05:33:08Z 2026-02-26 15:13:23.123456+00:00 ts=1767000000 at 10:30:45 on 02/28/2026",
        [],
        [],
        set(),
    ),
    (
        "neg_versions",
        "dagster==1.13.27, scrubadub 2.0.1, v0.29.27, go1.22.3, Version: 1.2.3.4, requests==2.31.0.1, "
        "OID 1.3.6.1.4.1.311",
        [],
        [],
        set(),
    ),
    ("neg_ports", "serve on :8080; postgres at localhost:5432; dolt port 3307; PID 41555", [], [], set()),
    (
        "neg_paths_without_username",
        "/tmp/x ~/gt $HOME/gt /home/runner/work/gastown /home/$USER/gt /home/<user>/gt /Users/Shared/gt "
        "/var/lib/dolt",
        [],
        [],
        set(),
    ),
    (
        "neg_token_counts",
        '{"usage":{"input_tokens":1234,"output_tokens":567,"cache_read_input_tokens":89012}}\n'
        "max_tokens: 4096\nTOKEN_LIMIT=200000\n--token-budget 5000",
        [],
        [],
        set(),
    ),
    (
        "neg_prose_keywords",
        "The refinery passes the key to the witness; auth is handled upstream. Password rotation policy "
        "is in gt-x12. --- PASS: TestMergeQueue (0.00s)\nPASS\nThe secret: keep beads small.",
        [],
        [],
        set(),
    ),
    (
        "neg_cobra_help",
        "Flags:\n      --password string     Password for the Dolt server\n      --token TOKEN   API token\n"
        "  -p, --port int   Port (default 3307)",
        [],
        [],
        set(),
    ),
    (
        "neg_code_references",
        'password = os.environ["DB_PASSWORD"]\ntoken = args.token\ndef login(user, password=password):\n'
        'api_key = config.api_key\ntoken := os.Getenv("GITHUB_TOKEN")',
        [],
        [],
        set(),
    ),
    (
        "neg_placeholder_values",
        'password: "<your-password>"\nAPI_KEY=xxxxxxxx\ntoken: "****"\n"password": ""\n'
        "postgres://user:password@localhost/db\nclient_secret: REDACTED",
        [],
        [],
        set(),
    ),
    (
        "neg_email_lookalikes",
        "git@github.com:steveyegge/gastown.git lodash@4.17.21 @types/node HEAD@{1} image@sha256:abc123 "
        "Co-Authored-By: Claude <noreply@anthropic.com>",
        [],
        [],
        set(),
    ),
    (
        "neg_number_tables",
        "| events.jsonl | 3,637,027 | 3667 |\n| issues.jsonl | 1,272,033 | 677 |\n1,234,567 tokens; 100 200 3000",
        [],
        [],
        set(),
    ),
    (
        "neg_public_key_material",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
        "grep -r 'BEGIN RSA PRIVATE KEY' . finds nothing; -----BEGIN OPENSSH PRIVATE KEY----- is the header",
        [],
        [],
        set(),
    ),
    (
        "neg_keylike_names_with_plain_values",
        'password_min_length: 12\ntoken_ttl: 3600\nAUTH_MODE=oauth\napi_key_env: ANTHROPIC_API_KEY\n"key": "gt-abc"\n'
        "idempotency_key: 550e8400-e29b-41d4-a716-446655440000\nsecret_ref: vault/ledger",
        [],
        [],
        set(),
    ),
    (
        "neg_transcript_ids",
        '{"tool_use_id":"toolu_01AbCdEfGhIjKlMnOpQrStUv","signature":"EqQBCkYIBxgCKkBzYWx0eWRvZ3NhcmVmdW4",'
        '"leafUuid":"6f1c1c9e-4d2b-4a55-9a3e-2b8f0c7d1e42","model":"claude-sonnet-4-5-20250929"}',
        [],
        [],
        set(),
    ),
    (
        "neg_gastown_env",
        "GT_ROLE=polecat GT_RIG=gastown BD_ACTOR=gastown/polecats/nux GT_TOWN_ROOT=/home/runner/gt "
        "BEADS_DIR=~/gt/.beads",
        [],
        [],
        set(),
    ),
    (
        "neg_code_types_and_calls",
        "secrets = SecretsCollection()\ndef __init__(self, username: str, password: str) -> None:\n"
        '"password": StringSource,\ntoken: TextGenerationStreamOutputToken\nkey_or_pass = opt_api\n'
        "raise CLIError('--registry-password requires --registry-user')\nusername, password = get_auth(url)",
        [],
        [],
        set(),
    ),
    (
        "neg_dotted_numbers_and_file_names",
        '__version__ = "3.5.0.1"\nper RFC 9110 section 8.4.1.3, see logo@2x.png and file@1.txt; build 2.4.0.9',
        [],
        [],
        set(),
    ),
    (
        "neg_words_with_token_prefixes",
        "task-decomposition-and-planning-phase-two; risk-assessment-for-merge-queue; "
        "self.hf_token_path; npm_config_cache; xox is not a token; AIza is a prefix",
        [],
        [],
        set(),
    ),
]

SCRUBBER = Scrubber()


def check_case(
    scrubber: Scrubber, name: str, text: str, vanish: list[str], survive: list[str], kinds: set[str]
) -> list[str]:
    """Problems with one labeled case (empty when it passes). Shared with bench/corpus_scrub.py."""
    problems = []
    res = scrubber.scrub(text)
    for v in vanish:
        if v in res.text:
            problems.append(f"{name}: still contains {v[:40]!r}")
    for v in survive:
        if v not in res.text:
            problems.append(f"{name}: lost {v[:60]!r}")
    if set(res.counts) != kinds:
        problems.append(f"{name}: kinds {sorted(res.counts)} != {sorted(kinds)}")
    if not kinds and res.text != text:
        problems.append(f"{name}: negative case changed")
    if res.unsafe:
        problems.append(f"{name}: unexpectedly unsafe: {res.unsafe}")
    again = scrubber.scrub(res.text)
    if again.text != res.text or again.counts:
        problems.append(f"{name}: not idempotent: {dict(again.counts)}")
    return problems


def test_case_table_is_well_formed() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 60
    assert sum(1 for c in CASES if not c[4]) >= 20


@pytest.mark.parametrize(("name", "text", "vanish", "survive", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_labeled_case(name: str, text: str, vanish: list[str], survive: list[str], kinds: set[str]) -> None:
    assert check_case(SCRUBBER, name, text, vanish, survive, kinds) == []


@pytest.mark.parametrize("depth", [1, 2], ids=["json", "json_in_json"])
def test_labeled_cases_inside_json_strings(depth: int) -> None:
    """Meta JSON and transcript lines are scrubbed as raw text: the result must still parse, with the
    same findings, whatever escapes (\\n, \\", \\\\n, \\u003c) surround the values."""
    problems = []
    for name, text, vanish, _survive, kinds in CASES:
        doc = json.dumps({"note": text, "n": 1})
        if depth == 2:
            doc = json.dumps({"new_value": doc})
        res = SCRUBBER.scrub(doc)
        try:
            back = json.loads(res.text)
            back = json.loads(back["new_value"]) if depth == 2 else back
        except ValueError as e:
            problems.append(f"{name}: invalid JSON after scrubbing: {e}")
            continue
        problems += [f"{name}: still contains {v[:30]!r}" for v in vanish if v in back["note"]]
        if set(res.counts) != kinds or res.unsafe:
            problems.append(f"{name}: kinds {sorted(res.counts)} != {sorted(kinds)} unsafe={res.unsafe}")
    assert problems == []


# ---- placeholders -----------------------------------------------------------------------------------
def test_same_value_same_placeholder_and_distinct_values_numbered() -> None:
    g1, g2 = ghp(), ghp()
    text = (
        f"owner alice@example.com, reviewer bob@corp.example.org, again Alice@Example.com\n"
        f"token {g1} then {g2} then {g1}\ncall (415) 555-0142 or +1 415-555-0142 or 312-555-0199"
    )
    res = SCRUBBER.scrub(text)
    assert res.text == (
        "owner <EMAIL>, reviewer <EMAIL_2>, again <EMAIL>\n"
        "token <SECRET:github_token> then <SECRET:github_token_2> then <SECRET:github_token>\n"
        "call <PHONE> or <PHONE> or <PHONE_2>"
    )
    assert res.counts == Counter(email=3, github_token=3, phone=3)


def test_whole_email_is_replaced_domain_included() -> None:
    res = SCRUBBER.scrub("mail alice@example.com now")
    assert res.text == "mail <EMAIL> now"


def test_user_placeholder_shared_across_path_forms() -> None:
    res = SCRUBBER.scrub("/home/alice/gt, /home/bob/x, -home-alice-gt-gastown, USER=alice")
    assert res.text == "/home/<USER>/gt, /home/<USER_2>/x, -home-<USER>-gt-gastown, USER=<USER>"


def test_agent_identity_domains_can_be_kept() -> None:
    text = "author jack@crew.gastown.local, reviewer mara@quillmesh.io, not me@evilgastown.local"
    assert SCRUBBER.scrub(text).text == "author <EMAIL>, reviewer <EMAIL_2>, not <EMAIL_3>"
    keep = Scrubber(allow_email_domains=("gastown.local",))
    assert keep.scrub(text).text == "author jack@crew.gastown.local, reviewer <EMAIL>, not <EMAIL_2>"


def test_placeholder_helper() -> None:
    assert placeholder("email") == "<EMAIL>"
    assert placeholder("email", 2) == "<EMAIL_2>"
    assert placeholder("github_token", 3) == "<SECRET:github_token_3>"


def test_idempotent_on_all_cases_joined() -> None:
    text = "\n\n".join(c[1] for c in CASES)
    first = SCRUBBER.scrub(text)
    assert first.counts and first.unsafe is None
    second = SCRUBBER.scrub(first.text)
    assert second.text == first.text and not second.counts


def test_empty_and_clean_text() -> None:
    assert SCRUBBER.scrub("") == ScrubResult("")
    res = SCRUBBER.scrub("gt prime\nbd ready")
    assert res.text == "gt prime\nbd ready" and not res.counts and res.unsafe is None and not res.changed


# ---- IPv6 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dial 2606:4700:4700::1111 now", "dial <IP> now"),  # public (global unicast)
        ("[2a00:1450:4001:82a::200e]:443", "[<IP>]:443"),
        ("from 2001:4860:4860:0:0:0:0:8888.", "from <IP>."),  # full form, sentence end
        ("mapped ::ffff:8.8.8.8 here", "mapped <IP> here"),  # IPv4-mapped public address
        ('{"addr":"2606:4700:4700::1001","lo":"::1"}', '{"addr":"<IP>","lo":"::1"}'),
    ],
)
def test_public_ipv6_is_scrubbed(text: str, expected: str) -> None:
    res = SCRUBBER.scrub(text)
    assert res.text == expected and set(res.counts) == {"ip"}


@pytest.mark.parametrize(
    "text",
    [
        "curl http://[::1]:8080/health",  # loopback
        "listen :: and 0:0:0:0:0:0:0:0",  # unspecified
        "fe80::1%eth0 and fe80::a00:27ff:fe4e:66a1",  # link-local
        "fd12:3456:789a::1 on the VPN",  # unique-local (private)
        "ff02::1 all nodes",  # multicast
        "docs use 2001:db8::1 and 2001:db8:85a3::8a2e:370:7334",  # documentation range
        "mapped ::ffff:10.0.0.1",  # IPv4-mapped private address
        "at 12:34:56, mac aa:bb:cc:dd:ee:ff, std::vector<int>, a::b::c, sha 16:27:ac:a5:76:28:2d:36",
        "ssh-ed25519 fingerprint SHA256:2001:4860 and `dead::beef`",
    ],
)
def test_ipv6_that_names_no_one_is_kept(text: str) -> None:
    res = SCRUBBER.scrub(text)
    assert res.text == text and not res.counts


# ---- unsafe / quarantine --------------------------------------------------------------------------------
def test_private_key_without_end_is_unsafe_and_removed() -> None:
    truncated = "\n".join(PEM.splitlines()[:8])  # a transcript cut mid-key
    res = SCRUBBER.scrub(f"$ cat deploy.pem\n{truncated}")
    assert res.unsafe and "END" in res.unsafe
    assert PEM.splitlines()[3] not in res.text and "$ cat deploy.pem" in res.text


def test_putty_key_without_mac_is_unsafe_and_removed() -> None:
    cut = PUTTY.rsplit("\n", 1)[0]  # no Private-MAC line
    res = SCRUBBER.scrub(f"{cut}\n\nAnd then the session ended.")
    assert res.unsafe and "PuTTY" in res.unsafe
    assert PUTTY.splitlines()[-2] not in res.text and "And then the session ended." in res.text


def test_token_glued_to_a_word_is_unsafe() -> None:
    token = ghp()
    res = SCRUBBER.scrub(f"prefix{token} in a log")
    assert res.unsafe is not None and "github_token" in res.unsafe


def test_token_after_json_newline_escape_is_removed_safely() -> None:
    token = ghp()
    res = SCRUBBER.scrub('{"text": "export\\n' + token + '"}')
    assert token not in res.text and res.unsafe is None and res.counts["github_token"] == 1


def test_bare_header_mention_is_not_unsafe() -> None:
    res = SCRUBBER.scrub("detect-secrets flags -----BEGIN RSA PRIVATE KEY----- in diffs and commits anywhere")
    assert res.unsafe is None and not res.counts


# ---- scrubadub's known misses ------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # scrubadub's own Filth.replace_with notice
def test_catches_what_scrubadub_misses() -> None:
    scrubadub = pytest.importorskip("scrubadub")
    key, token, hf_tok = akia(), ghp(), hf()
    text = f"aws {key}\ngh {token}\nhf {hf_tok}\n{PEM}\ncwd /home/alice/gt\nmail alice@example.com"
    theirs = scrubadub.clean(text)
    for missed in (key, token, hf_tok, PEM_BODY_LINE, "/home/alice"):
        assert missed in theirs  # documents the gap (scrubadub 2.0.1 defaults)
    ours = SCRUBBER.scrub(text)
    for value in (key, token, hf_tok, PEM_BODY_LINE, "alice", "example.com"):
        assert value not in ours.text
    assert set(ours.counts) == {"aws_access_key", "github_token", "hf_token", "private_key", "user", "email"}


def test_phone_verdicts_match_scrubadub_phone_detector() -> None:
    """Phone candidates are confirmed by scrubadub's PhoneDetector logic (phonenumbers' matcher)."""
    phone_mod = pytest.importorskip("scrubadub.detectors.phone")
    detector = phone_mod.PhoneDetector(locale="en_US")
    samples = [
        "page (415) 555-0142 now",
        "call +1 312-555-0199 today",
        "backup 646.555.0173.",
        "London +44 20 7946 0321",
        "numbers 100 200 3000 here",
        "fake 123-456-7890 here",
    ]
    for s in samples:
        theirs = {f.text for f in detector.iter_filth(s)}
        ours = SCRUBBER.scrub(s)
        assert (ours.counts["phone"] > 0) == bool(theirs), s
        for t in theirs:
            assert t not in ours.text


# ---- JSONL ------------------------------------------------------------------------------------------------
def test_scrub_jsonl_keeps_fields_and_drops_bad_lines(tmp_path) -> None:
    token = ghp()
    src = tmp_path / "in.jsonl"
    rows = [
        json.dumps({"id": "gt-1", "source": "beads", "text": f"owner alice@example.com token {token}"}),
        "this is not json",
        json.dumps(["a", "list"]),
        "",
        json.dumps({"id": "gt-2", "text": "nothing here", "meta": {"rig": "gastown"}}),
        json.dumps({"id": "gt-3", "title": "no text field"}),
        json.dumps({"id": "gt-4", "text": "\n".join(PEM.splitlines()[:6])}),
    ]
    with open(src, "wb") as f:
        f.write("\n".join(rows).encode() + b"\n")
        f.write(b'{"id": "gt-5", "text": "bad \xff byte"}\n')
    dst = tmp_path / "out.jsonl"
    counts = scrub_jsonl(src, dst)
    out = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert [o["id"] for o in out] == ["gt-1", "gt-2", "gt-3"]
    assert out[0] == {"id": "gt-1", "source": "beads", "text": "owner <EMAIL> token <SECRET:github_token>"}
    assert out[1] == {"id": "gt-2", "text": "nothing here", "meta": {"rig": "gastown"}}
    assert counts == Counter(docs=3, bad_line=3, email=1, github_token=1, no_field=1, unsafe=1)
    raw = dst.read_text(encoding="utf-8")
    assert "this is not json" not in raw and token not in raw and "alice" not in raw


def test_scrub_jsonl_custom_field(tmp_path) -> None:
    src, dst = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    src.write_text(json.dumps({"body": "mail bob@corp.example.org", "text": "x"}) + "\n", encoding="utf-8")
    counts = scrub_jsonl(src, dst, field="body", scrubber=Scrubber())
    assert json.loads(dst.read_text(encoding="utf-8")) == {"body": "mail <EMAIL>", "text": "x"}
    assert counts == Counter(docs=1, email=1)


# ---- statelessness ----------------------------------------------------------------------------------------
def test_scrubber_keeps_no_state_between_documents() -> None:
    sc = Scrubber()
    before = dict(vars(sc))
    first = sc.scrub("a alice@example.com")
    sc.scrub("b bob@example.org " + ghp())
    assert vars(sc) == before
    assert sc.scrub("a alice@example.com") == first
