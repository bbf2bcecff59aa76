"""Build tests/data/dlp_corpus.jsonl: labelled positives and hard negatives for every built-in detector.

    .venv/bin/python -m tests.unit.dlp.make_corpus

Deterministic (seeded Faker and random). Each line is ``{"text", "label", "value"}`` for a
positive (``value`` occurs in ``text`` and is what ``label`` must find, exactly) or
``{"text", "label": null, "near"}`` for a negative (``near`` names the detector it tries to fool).
Every value is synthetic: random digits/keys, Faker people, checksums computed here.
"""
from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path

from faker import Faker

OUT = Path(__file__).resolve().parents[2] / "data" / "dlp_corpus.jsonl"
fake = Faker(["en_US"])
Faker.seed(7)
rnd = random.Random(7)
PER_DETECTOR = 60

SENTENCES = [
    "Please update the record: {v}.", "Customer wrote in, details {v} — can you help?", "{v}",
    "Here is what I have on file: {v}", "Summarise this ticket. The user gave {v} as reference.",
    "Translate to French: my details are {v}", "Note from the call: {v}. Follow up tomorrow.",
]


def say(v: str) -> str:
    return rnd.choice(SENTENCES).format(v=v)


def alnum(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        s = "".join(rnd.choice(alphabet) for _ in range(n))
        wants = [str.isdigit, str.isupper, str.islower]
        if all(any(w(c) for c in s) for w in wants if any(w(c) for c in alphabet)):
            return s


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def group(num: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(num[i:i + s])
        i += s
    if i < len(num):
        out.append(num[i:])
    return sep.join(x for x in out if x)


def nanp() -> tuple[str, str, str]:
    area = str(rnd.randint(2, 9)) + str(rnd.randint(0, 9)) + str(rnd.randint(2, 8))  # no N11 service codes
    exch = str(rnd.randint(2, 9)) + str(rnd.randint(0, 9)) + str(rnd.randint(2, 9))
    return area, exch, f"{rnd.randint(0, 9999):04d}"


# --- positives -----------------------------------------------------------------------------------
def pos_email() -> tuple[str, str]:
    v = rnd.choice([fake.email, fake.company_email, fake.free_email, fake.ascii_safe_email])()
    return v, say(v)


def pos_phone() -> tuple[str, str]:
    a, e, s = nanp()
    forms = [
        f"+1{a}{e}{s}", f"+1 {a} {e} {s}", f"+1 ({a}) {e}-{s}", f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"{a}.{e}.{s}",
        f"1-{a}-{e}-{s}", f"{a}-{e}-{s} x{rnd.randint(10, 9999)}",
        f"+44 20 {rnd.randint(7000, 8999)} {rnd.randint(1000, 9999)}", f"+49 30 {rnd.randint(1000000, 99999999)}",
        f"+33 {rnd.randint(1, 9)} {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)}",
        f"020 {rnd.randint(7000, 8999)} {rnd.randint(1000, 9999)}", f"01632 {rnd.randint(100000, 999999)}",
        f"030 {rnd.randint(10000000, 99999999)}", f"0{rnd.randint(1, 9)} {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)}",
    ]
    v = rnd.choice(forms)
    return v, rnd.choice([f"Call me on {v} after 5pm.", f"phone: {v}", f"You can reach the office at {v}.", say(v)])


CARD_TYPES = ["visa16", "visa13", "mastercard", "amex", "discover", "jcb16", "diners", "visa19"]


def card_number() -> str:
    return fake.credit_card_number(card_type=rnd.choice(CARD_TYPES))


def pos_card() -> tuple[str, str]:
    n = card_number()
    style = rnd.random()
    if style < 0.4:
        v = n
    elif len(n) == 15:
        v = group(n, [4, 6, 5], rnd.choice([" ", "-"]))
    else:
        v = group(n, [4, 4, 4, 4], rnd.choice([" ", "-"]))
    return v, rnd.choice([f"Charge card {v} exp 04/27", f"my card number is {v}", say(v)])


IBAN_LOCALES = ["de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES", "it_IT", "pl_PL", "fi_FI", "no_NO", "pt_PT"]
ibans = {loc: Faker(loc) for loc in IBAN_LOCALES}
for i, f in enumerate(ibans.values()):
    f.seed_instance(100 + i)


def iban_number() -> str:
    return ibans[rnd.choice(IBAN_LOCALES)].iban()


def pos_iban() -> tuple[str, str]:
    n = iban_number()
    v = n if rnd.random() < 0.5 else " ".join(n[i:i + 4] for i in range(0, len(n), 4))
    return v, rnd.choice([f"Wire it to IBAN {v} please", f"Bank: {v} (BIC COBADEFFXXX)", say(v)])


def ssn_number() -> tuple[str, str, str]:
    while True:
        a = rnd.randint(1, 899)
        if a != 666:
            return f"{a:03d}", f"{rnd.randint(1, 99):02d}", f"{rnd.randint(1, 9999):04d}"


def pos_ssn() -> tuple[str, str]:
    a, g, s = ssn_number()
    r = rnd.random()
    if r < 0.6:
        v = f"{a}-{g}-{s}"
        return v, say(v)
    if r < 0.8:
        v = f"{a} {g} {s}"
        return v, f"SSN {v}"
    v = f"{a}{g}{s}"
    return v, rnd.choice([f"SSN: {v}", f"social security number {v} on the form", f"Her ssn is {v}."])


def pos_ipv4() -> tuple[str, str]:
    v = rnd.choice([fake.ipv4, fake.ipv4_private, fake.ipv4_public])()
    return v, rnd.choice([f"ssh into {v} and restart nginx", f"The client IP was {v}.", say(v)])


def pos_ipv6() -> tuple[str, str]:
    r = rnd.random()
    if r < 0.5:
        v = fake.ipv6()
    elif r < 0.8:
        v = f"2001:db8:{rnd.randint(1, 0xffff):x}::{rnd.randint(1, 0xffff):x}"
    else:
        v = f"fe80::{rnd.randint(1, 0xffff):x}:{rnd.randint(1, 0xffff):x}:{rnd.randint(1, 0xffff):x}:{rnd.randint(1, 0xffff):x}"
    return v, rnd.choice([f"ping6 {v}", f"the server listens on [{v}]:443", say(v)])


def pos_dob() -> tuple[str, str]:
    d = fake.date_of_birth(minimum_age=1, maximum_age=100)
    fmt = rnd.choice(["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%B %d, %Y", "%d %B %Y", "%b %d, %Y"])
    v = d.strftime(fmt)
    return v, rnd.choice([f"born on {v}", f"DOB: {v}", f"Date of birth {v}, nationality {fake.country()}",
                          f"Patient {fake.name()}, d.o.b. {v}, presents with a cough.", f"His birthday is {v}."])


def pos_openai() -> tuple[str, str]:
    v = rnd.choice(["sk-proj-", "sk-", "sk-svcacct-"]) + alnum(rnd.choice([48, 64, 120]), string.ascii_letters + string.digits + "_-")
    return v, rnd.choice([f"OPENAI_API_KEY={v}", f"use this key: {v}", f'client = OpenAI(api_key="{v}")', say(v)])


def pos_anthropic() -> tuple[str, str]:
    v = "sk-ant-api03-" + alnum(93, string.ascii_letters + string.digits + "_-") + "AA"
    return v, rnd.choice([f"ANTHROPIC_API_KEY={v}", f"x-api-key: {v}", say(v)])


def pos_groq() -> tuple[str, str]:
    v = "gsk_" + alnum(52)
    return v, rnd.choice([f"GROQ_API_KEY={v}", f"groq key {v}", say(v)])


def pos_aws_id() -> tuple[str, str]:
    v = rnd.choice(["AKIA", "ASIA"]) + "".join(rnd.choice(string.ascii_uppercase + "234567") for _ in range(16))
    return v, rnd.choice([f"aws_access_key_id = {v}", f"AWS_ACCESS_KEY_ID={v}", say(v)])


def pos_aws_secret() -> tuple[str, str]:
    v = alnum(40, string.ascii_letters + string.digits + "/+")
    return v, rnd.choice([f"aws_secret_access_key = {v}", f"AWS_SECRET_ACCESS_KEY={v}",
                          f'{{"AccessKeyId": "AKIA...", "SecretAccessKey": "{v}"}}', f"aws secret: {v}"])


def pos_github() -> tuple[str, str]:
    v = rnd.choice(["ghp_", "gho_", "ghs_"]) + alnum(36) if rnd.random() < 0.75 else "github_pat_" + alnum(82, string.ascii_letters + string.digits + "_")
    return v, rnd.choice([f"GITHUB_TOKEN={v}", f"git clone https://{v}@github.com/acme/repo.git", say(v)])


def pos_slack() -> tuple[str, str]:
    r = rnd.random()
    if r < 0.7:
        v = f"xox{rnd.choice('bpa')}-{rnd.randint(10**10, 10**12)}-{rnd.randint(10**10, 10**12)}-{alnum(24)}"
    else:
        v = f"https://hooks.slack.com/services/T{alnum(9, string.ascii_uppercase + string.digits)}/B{alnum(9, string.ascii_uppercase + string.digits)}/{alnum(24)}"
    return v, rnd.choice([f"SLACK_BOT_TOKEN={v}", f"post to {v}", say(v)])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pos_jwt() -> tuple[str, str]:
    header = {"alg": rnd.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    payload = {"sub": str(rnd.randint(1, 10**9)), "name": fake.name(), "iat": rnd.randint(1.5e9, 1.8e9)}
    v = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(rnd.randbytes(32))])
    return v, rnd.choice([f"Authorization: Bearer {v}", f"token={v}", f"decode this jwt {v}", say(v)])


def pos_pem() -> tuple[str, str]:
    kind = rnd.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED ", "DSA "])
    body = base64.b64encode(rnd.randbytes(rnd.choice([120, 300, 900]))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    v = f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"
    return v, rnd.choice([f"here is my key:\n{v}\nwhy does ssh reject it?", v, f"```\n{v}\n```"])


def pos_generic() -> tuple[str, str]:
    v = fake.password(length=rnd.randint(10, 20), special_chars=True, digits=True, upper_case=True, lower_case=True)
    key = rnd.choice(["password", "DB_PASSWORD", "api_key", "apiKey", "client_secret", "secret", "auth_token", "passwd"])
    return v, rnd.choice([f"{key}={v}", f'{key}: "{v}"', f'{{"{key}": "{v}"}}', f"set {key} = '{v}' in the config"])


POSITIVES = {
    "email": pos_email, "phone": pos_phone, "credit_card": pos_card, "iban": pos_iban, "us_ssn": pos_ssn,
    "ipv4": pos_ipv4, "ipv6": pos_ipv6, "date_of_birth": pos_dob, "openai_api_key": pos_openai,
    "anthropic_api_key": pos_anthropic, "groq_api_key": pos_groq, "aws_access_key_id": pos_aws_id,
    "aws_secret_access_key": pos_aws_secret, "github_token": pos_github, "slack_token": pos_slack, "jwt": pos_jwt,
    "pem_private_key": pos_pem, "generic_secret": pos_generic,
}


# --- negatives -----------------------------------------------------------------------------------
def bad_luhn() -> str:
    n = card_number()
    last = str((int(n[-1]) + rnd.randint(1, 9)) % 10)
    return n[:-1] + last


def bad_iban() -> str:
    n = iban_number()
    i = rnd.randint(4, len(n) - 1)
    while True:
        c = rnd.choice(string.digits)
        if c != n[i] and n[i].isdigit():
            return n[:i] + c + n[i + 1:]
        i = rnd.randint(4, len(n) - 1)


def spaced(n: str) -> str:
    return " ".join(n[i:i + 4] for i in range(0, len(n), 4))


def neg_ssn() -> str:
    a, g, s = ssn_number()
    return rnd.choice([f"000-{g}-{s}", f"666-{g}-{s}", f"9{rnd.randint(0, 99):02d}-{g}-{s}", f"{a}-00-{s}", f"{a}-{g}-0000"])


NEGATIVES: list[tuple[str, callable]] = [
    ("credit_card", lambda: say(bad_luhn())),
    ("credit_card", lambda: f"card {group(bad_luhn(), [4, 4, 4, 4], ' ')} was declined"),
    ("credit_card", lambda: f"Order #{rnd.randint(10**15, 10**16 - 1)} shipped"),
    ("iban", lambda: say(bad_iban())),
    ("iban", lambda: f"IBAN {spaced(bad_iban())} bounced"),
    ("us_ssn", lambda: f"SSN {neg_ssn()} is not valid"),
    ("us_ssn", lambda: f"ticket {rnd.randint(100000000, 999999999)} closed"),
    ("phone", lambda: f"the build number is {rnd.randint(100, 999)}-{rnd.randint(100, 999)}-{rnd.randint(100, 999)}"),
    ("phone", lambda: f"call 555-{rnd.randint(100, 999)}? no, extension {rnd.randint(10, 99)}"),
    ("phone", lambda: f"ISBN 978-{rnd.randint(0, 9)}-{rnd.randint(100, 999)}-{rnd.randint(10000, 99999)}-{rnd.randint(0, 9)}"),
    ("phone", lambda: f"({rnd.choice('01')}{rnd.randint(10, 99)}) {rnd.randint(100, 999)}-{rnd.randint(1000, 9999)} is not a US number"),
    ("phone", lambda: f"we shipped {rnd.randint(1000, 9999)} units on {fake.date()}"),
    ("ipv4", lambda: f"version {rnd.randint(1, 20)}.{rnd.randint(0, 20)}.{rnd.randint(0, 99)}"),
    ("ipv4", lambda: f"address {rnd.randint(256, 999)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)} is invalid"),
    ("ipv4", lambda: f"bump to v{rnd.randint(1, 9)}.{rnd.randint(0, 9)}.{rnd.randint(0, 9)}.{rnd.randint(0, 9)}"),
    ("ipv4", lambda: f"OID 1.3.6.1.4.1.{rnd.randint(1000, 99999)}"),
    ("ipv6", lambda: f"meeting at {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d} UTC"),
    ("ipv6", lambda: f"MAC {':'.join(f'{rnd.randint(0, 255):02x}' for _ in range(6))}"),
    ("ipv6", lambda: rnd.choice(["use std::vector<int> here", "std::map and std::string", "call Foo::bar() then Baz::qux()"])),
    ("date_of_birth", lambda: f"The invoice is dated {fake.date_between('-30y', 'today').strftime(rnd.choice(['%Y-%m-%d', '%m/%d/%Y', '%B %d, %Y']))}."),
    ("date_of_birth", lambda: f"Meeting moved to {fake.date_between('-1y', '+1y').strftime('%d.%m.%Y')} at 10:00"),
    ("date_of_birth", lambda: f"born on {rnd.randint(2030, 2099)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)} in a sci-fi novel"),
    ("date_of_birth", lambda: f"birthday party on 2021-{rnd.randint(13, 19)}-{rnd.randint(32, 39)}"),
    ("openai_api_key", lambda: rnd.choice(["pip install scikit-learn (sk-learn)", "risk-assessment-framework-overview-2024",
                                           "sk-1234", "the task-management-system-design-doc-v2 is ready"])),
    ("openai_api_key", lambda: f"sk-{'a' * rnd.randint(20, 40)}"),
    ("aws_access_key_id", lambda: f"AKIA{rnd.randint(10**14, 10**15)}"),
    ("aws_secret_access_key", lambda: f"secret santa commit {''.join(rnd.choice('0123456789abcdef') for _ in range(40))}"),
    ("aws_secret_access_key", lambda: f"checksum {alnum(40, string.ascii_letters + string.digits)} of the tarball"),
    ("github_token", lambda: f"ghp_{alnum(20)} is truncated"),
    ("slack_token", lambda: "xoxb-not-a-token"),
    ("jwt", lambda: f"eyJ{alnum(10)}.{alnum(8)} is not a jwt"),
    ("jwt", lambda: ".".join([b64url(b'{"foo": 1}'), b64url(b"{}"), alnum(20)])),
    ("pem_private_key", lambda: f"-----BEGIN PUBLIC KEY-----\n{base64.b64encode(rnd.randbytes(200)).decode()}\n-----END PUBLIC KEY-----"),
    ("pem_private_key", lambda: f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(rnd.randbytes(300)).decode()}\n-----END CERTIFICATE-----"),
    ("generic_secret", lambda: rnd.choice([
        "password=YOUR_PASSWORD_HERE", 'api_key = os.environ["OPENAI_API_KEY"]', "password: ********", "token=${API_TOKEN}",
        "password=password", 'secret: "{{ vault.db_secret }}"', "max_tokens=1024", "password reset link sent to the user",
        "api_key: <your-api-key>", "password = getpass()", "pwd=/home/user/projects", "secret=settings.SECRET_KEY",
        "api_key=changeme123!", "client_secret: REPLACE_ME_PLEASE", "token: undefined", "password=example-Passw0rd",
    ])),
    (None, lambda: fake.paragraph(nb_sentences=rnd.randint(2, 6))),
    (None, lambda: f"{fake.name()} from {fake.company()} ordered {rnd.randint(1, 50)} items for ${rnd.randint(1, 9999)}.{rnd.randint(10, 99)}"),
    (None, lambda: f"def f(x):\n    return x ** {rnd.randint(2, 9)} + {rnd.randint(1, 100)}  # {fake.sentence()}"),
    (None, lambda: f"UUID {fake.uuid4()} created at {fake.iso8601()}"),
    (None, lambda: f"commit {fake.sha1()} by {fake.user_name()}: {fake.sentence()}"),
    (None, lambda: f"color {fake.hex_color()} and font-size {rnd.randint(8, 30)}px; padding {rnd.randint(0, 20)}px"),
    (None, lambda: f"Tracking 1Z{alnum(16, string.ascii_uppercase + string.digits)} from zip {fake.zipcode_plus4()}"),
]


def main() -> None:
    rows: list[dict] = []
    for label, gen in POSITIVES.items():
        for _ in range(PER_DETECTOR):
            value, text = gen()
            assert value in text, (label, value, text)
            rows.append({"text": text, "label": label, "value": value})
    per_neg = 24
    for near, gen in NEGATIVES:
        for _ in range(per_neg):
            rows.append({"text": gen(), "label": None, "near": near})
    rnd.shuffle(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    pos = sum(1 for r in rows if r["label"])
    print(f"{OUT}: {pos} positives, {len(rows) - pos} negatives")


if __name__ == "__main__":
    main()
