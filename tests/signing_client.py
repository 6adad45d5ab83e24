"""A WeChat API-security client written from WeChat's guide (docs/api.md sums it up), not from
the server's code, and the guide's official vectors (Appendix A).

It seals requests as WxJava does (4-line signature string, RSA-PSS salt 32, AES-256-GCM,
security fields after the parameters) and opens responses, verifying the platform's
signature before it decrypts.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

APPID = "wxba6223c06417af7b"
URLPATH = "https://api.weixin.qq.com/wxa/getuserriskrank"
AES_KEY = "otUpngOjU+nVQaWJIC3D/yMLV17RKaP6t4Ot9tbnzLY="
AES_SN = "fa05fe1e5bcc79b81ad5ad4b58acf787"
APP_KEY_SN = "97845f6ed842ea860df6fdf65941ff56"
PLATFORM_SN = "79ba700ea147819f640941bceb38b1d1"

REQUEST_TS = 1635927954
REQUEST_BODY = {
    "iv": "fmW/zNxXlytUZBgj",
    "data": "0IDVdrPtSPF/Oe2CTXCV2vVNPbVJdJlP2WaTMQnoYLh5iCrrSNfQFh25EnStDMf0hLlVNBCZQtf9NaV0m4aRA4AAYIO7oR/Ge+4yY4EmZp5EVPB42xjScgMx5X3D4VdLCfynXIUKUtZHZvk1zmLVE3RauzJgiM1BB1CPmwcENo3MTJ0z8Vfkf5tMv54kOXobDLlV5rfqKdAX7gM/rP82DgZdt9vvZX44ipdbHIjJvw83ZXAFtvftdVw2Qd8=",
    "authtag": "5qeM/2vZv+6KtScN94IpMg==",
}
REQUEST_SIGNATURE = "wcSSWHZunjz9VKl9q+If9deiyECXDAELfAJNZ4+5T+NhFr8zfhkwdQtlgQ7nN5xs99R57La9UjBTRBGge2KYyshWtw7HIMPAqWNsnpHvx0b2f7s6Bt7OpfOQLlIfNgepgTVmUwrqW8/7A12szj7tCe/bRFilwnaX6N0w4duHlfL7ic7IIZXouvy9dLRAa5GtEk1eD/LPWRiKh0SvJ3znPY/pSiQW9zSkXVdj9UGGM8qcKLzPGJ7gSmt3ZOPkFapk9wqFmhJwQj//xN5+hUlr2UiNPMNSHve5Y2ADLsNHqk5t7RfAZ8nW9/8lzhVt4t+toy1FeehxCGIC8qgmjIl1hg=="
REQUEST_PLAINTEXT = {"_n": "o89QaPVsRu1yppIZzvSZc4", "_appid": APPID, "_timestamp": REQUEST_TS,
                     "appid": APPID, "openid": "oEWzBfmdLqhFS2mTXCo2E4Y9gJAM", "scene": 0,
                     "client_ip": "127.0.0.1"}  # fmt: skip

RESPONSE_TS = 1635927956
RESPONSE_BODY = {
    "iv": "r2WDQt56rEAmMuoR",
    "data": "HExs66Ik3el+iM4IpeQ7SMEN934FRLFYOd3EmeaIrpP4EPTHckoco6O+PaoRZRa3lqaPRZT7r52f7LUok6gLxc6cdR8C4vpIIfh4xfLC4L7FNy9GbuMK1hcoi8b7gkWJcwZMkuCFNEDmqn3T49oWzAQOrY4LZnnnykv6oUJotdAsnKvmoJkLK7hRh7M2B1d2UnTnRuoIyarXc5Iojwoghx4BOvnV",
    "authtag": "z2BFD8QctKXTuBlhICGOjQ==",
}
RESPONSE_SIGNATURE = "Ht0VfQkkEweJ4hU266C14Aj64H9AXfkwNi5zxUZETCvR2svU1ZYdosDhFX/voLj1TyszqKsVxAlENGt7PPZZ8RQX7jnA4SKhiPUhW4LTbyTenisHJ+ohSfDjYnXavjQsBHspFS+BlPHuSSJ2xyQzw1+HuC6nid09ZL4FnGSYo4OI5MJrSb9xLzIVZMIDuUQchGKi/KaB1KzxECLEZcfjqbAgmxC7qOmuBLyO1WkHYDM95NJrHJWba5xv4wrwPru9yYTJSNRnlM+zrW5w9pOubC4Jtj3szTAEuOz9AcqUmgaAvMLNAIa8hfODLRe3n/cu4SgYlN/ZkNRU4QXVNbPGMg=="
RESPONSE_PLAINTEXT = {"_n": "ShYZpqdVgY+yQVAxNSWhYg", "_appid": APPID, "_timestamp": RESPONSE_TS,
                      "errcode": 0, "errmsg": "getuserriskrank succ", "risk_rank": 0,
                      "unoin_id": 2258658297}  # fmt: skip

APP_PRIVATE_KEY_PEM = b"""-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEA3FoQOmOl5/CF5hF7ta4EzCy2LaU3Eu2k9DBwQ73J82I53Sx9
LAgM1DH3IsYohRRx/BESfbdDI2powvr6QYKVIC+4Yavwg7gzhZRxWWmT1HruEADC
ZAgkUCu+9Il/9FPuitPSoIpBd07NqdkkRe82NBOfrKTdhge/5zd457fl7J81Q5VT
IxO8vvq7FSw7k6Jtv+eOjR6SZOWbbUO7f9r4UuUkXmvdGv21qiqtaO1EMw4tUCEL
zY73M7NpCH3RorlommYX3P6q0VrkDHrCE0/QMhmHsF+46E+IRcJ3wtEj3p/mO1Vo
CpEhawC1U728ZUTwWNEii8hPEhcNAZTKaQMaTQIDAQABAoIBAQCXv5p/a5KcyYKc
75tfgekh5wTLKIVmDqzT0evuauyCJTouO+4z/ZNAKuzEUO0kwPDCo8s1MpkU8boV
1Ru1M8WZNePnt65aN+ebbaAl8FRzNvltoeg9VXIUmBvYcjzhOVAE4V2jW7M8A9QU
zUpyswuED6OeFKfOHtYk2In2IipAqhfbyc6gn7uZSWTQsoO6hGBRQ7Ejx+vgwrbx
ZKVZ7UXbPHD0lOEPraA3PH/QUeUKpNwK2NXQoBxWcR283/HxFSAjjSSsGSBKsCnw
DN55P2FQ0HNi5YrwUNT9190NIXSeygaRy1b+D+yBfm+yE7/qXwHLZCHsjO+2tMSS
3KGjllTBAoGBAP9FPeYNKZuu5jt9RpZwXCc9E7Iz7bmM7zws6dun6dQH0xVVWFVm
iGIu07eqyB8HNagXseFzoXLV5EQx+3DaB0bAH+ZEpHGJJpAWSLusigssFUFuTvTF
w+rC5hxOfidMa6+93SU5pWeJb0zJF8PRDaJ3UmwlwpYubF17sT4PD6p9AoGBANz7
RlhRSFvggJjhEMpek3OIYWrrlRNO2MVcP7i/fGNTHhrw7OHcNGRof54QZ2Y0baL7
1vHNokbK2mnT+cQXY/gXMmcE/eV4xyRGYiIL9nBdrkLerc43EYPv+evDvgyji6+y
4np5cKqHrS8F+YzATk82Jt9HgdI2MvfbJTkSbmgRAoGAHNPL9rPb1An/VA6Ery6H
KaM7Gy/EE+U3ixsjWbvvqxMrIkieDh7jHftdy2sM6Hwe8hmi6+vr+pTvD0h5tbfZ
hILj11Q/Idc0NKdflVoZyMM0r0vuvLOsuVFDPUUb+AIoUxNk6vREmpmpqQk4ltN/
763779yfyef6MuBqFrEKut0CgYB9FfsuuOv1nfINF7EybDCZAETsiee7ozEPHnWv
dSzK6FytMV1VSBmcEI7UgUKWVu0MifOUsiq+WcsihmvmNLtQzoioSeoSP7ix7ulT
jmP0HQMsNPI7PW67uVZFv2pPqy/Bx8dtPlqpHN3KNV6Z7q0lJ2j/kHGK9UUKidDb
KnS2kQKBgHZ0cYzwh9YnmfXx9mimF57aQQ8aFc9yaeD5/3G2+a/FZcHtYzUdHQ7P
PS35blD17/NnhunHhuqakbgarH/LIFMHITCVuGQT4xS34kFVjFVhiT3cHfWyBbJ6
GbQuzzFxz/UKDDKf3/ON41k8UP20Gdvmv/+c6qQjKPayME81elus
-----END RSA PRIVATE KEY-----
"""

PLATFORM_CERT_PEM = b"""-----BEGIN CERTIFICATE-----
MIID0jCCArqgAwIBAgIUeE+Yy7vM/o+eHHsfM+1bGJJEZTQwDQYJKoZIhvcNAQEL
BQAwXjELMAkGA1UEBhMCQ04xEzARBgNVBAoTClRlbnBheS5jb20xHTAbBgNVBAsT
FFRlbnBheS5jb20gQ0EgQ2VudGVyMRswGQYDVQQDExJUZW5wYXkuY29tIFJvb3Qg
Q0EwHhcNMjIwOTA1MDgzOTIyWhcNMjcwOTA0MDgzOTIyWjBkMRswGQYDVQQDDBJ3
eGQ5MzBlYTVkNWEyNThmNGYxFTATBgNVBAoMDFRlbmNlbnQgSW5jLjEOMAwGA1UE
CwwFV3hnTXAxCzAJBgNVBAYMAkNOMREwDwYDVQQHDAhTaGVuWmhlbjCCASIwDQYJ
KoZIhvcNAQEBBQADggEPADCCAQoCggEBAM5D9qlkCmk1kr3FpF0e9pc3kGsvz5RA
0/YRny9xPKIyV2UVMDZvRQ+mDHsiQQFE6etg457KFYSxTDKtItbdl6hJQVGeAvg0
mqPYE9SkHRGTfL/AnXRbKBG2GC2OcaPSAprsLOersjay2me+9pF8VHybV8aox78A
NsU75G/OO3V1iEE0s5Pmglqk8DEiw9gB/dGJzsNfXwzvyJyiUP9ZujYexyjsS+/Z
GdSOUkqL/th+16yHj8alcdyga6YGfWEDyWkt/i/B28cwx4nzwk8xgrurifPaLuMk
0+9wJQLCfAn/f7zyHrC8PcD1XvvRt9VBNMBASXs3710ODyyVf2lkMgkCAwEAAaOB
gTB/MAkGA1UdEwQCMAAwCwYDVR0PBAQDAgTwMGUGA1UdHwReMFwwWqBYoFaGVGh0
dHA6Ly9ldmNhLml0cnVzLmNvbS5jbi9wdWJsaWMvaXRydXNjcmw/Q0E9MUJENDIy
MEU1MERCQzA0QjA2QUQzOTc1NDk4NDZDMDFDM0U4RUJEMjANBgkqhkiG9w0BAQsF
AAOCAQEAL2MK9tYu+ljLVBlSbfEeaKyF07TN+G31Ya5NBzeS1ZCx4joUEIyACWmG
fUkKNKiKV+EMzxeEhKRso1Qif3E7Ipl+PQBoQw6OSR/jFHciYurnGR9CLkL03Zo1
qw1Xetv9OipsvlpA0SOWc207e/XpGdm8C7FMXM6bzvVp8I/STTjC1vqjIZu9WavI
RgGM4jyAPz2XogUq0BNijef8BXbbav9fAsXjHSwn5BQv4iLms3fiLm/eoyQ6dZ2R
oTudrlcyr1bG4vwETLmHF+3yfVp9dpvJ+lyfiviwDwyfa8t2WlJm27DuF4vWoxir
mjgj9tDutIFqxLIovLyg3uiAYtSQ/Q==
-----END CERTIFICATE-----
"""


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def app_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(APP_PRIVATE_KEY_PEM, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def app_public_pem() -> bytes:
    return (
        app_private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def platform_cert_key() -> rsa.RSAPublicKey:
    key = x509.load_pem_x509_certificate(PLATFORM_CERT_PEM).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@dataclass
class SigningClient:
    """What a WxJava-like client holds: appid, AES key + sn, its private key + sn."""

    appid: str
    aes_key_b64: str = AES_KEY
    aes_sn: str = AES_SN
    key_sn: str = APP_KEY_SN

    def seal(
        self, urlpath: str, params: dict[str, Any], ts: int, **fields: Any
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of a sealed request (parameters first, then the _ fields;
        ``fields`` replace ``_n``/``_appid``/``_timestamp`` to build bad requests)."""
        plain = {**params, "_n": secrets.token_hex(15), "_appid": self.appid, "_timestamp": ts}
        plain.update(fields)
        iv = secrets.token_bytes(12)
        aad = f"{urlpath}|{self.appid}|{ts}|{self.aes_sn}".encode()
        ct = AESGCM(base64.b64decode(self.aes_key_b64)).encrypt(iv, compact(plain), aad)
        body = compact({"iv": base64.b64encode(iv).decode(),
                        "data": base64.b64encode(ct[:-16]).decode(),
                        "authtag": base64.b64encode(ct[-16:]).decode()})  # fmt: skip
        to_sign = f"{urlpath}\n{self.appid}\n{ts}\n".encode() + body
        sig = app_private_key().sign(to_sign, _pss(), hashes.SHA256())
        headers = {"Wechatmp-Appid": self.appid, "Wechatmp-TimeStamp": str(ts),
                   "Wechatmp-Signature": base64.b64encode(sig).decode(),
                   "Wechatmp-Serial": self.key_sn,
                   "Content-Type": "application/json; charset=utf-8"}  # fmt: skip
        return headers, body

    def open(self, urlpath: str, headers: Any, body: bytes, platform_key: rsa.RSAPublicKey) -> dict[str, Any]:  # fmt: skip
        """Verify the platform's signature, then decrypt; the plaintext JSON."""
        appid, ts = headers["Wechatmp-Appid"], headers["Wechatmp-TimeStamp"]
        assert appid == self.appid
        to_verify = f"{urlpath}\n{appid}\n{ts}\n".encode() + body
        platform_key.verify(
            base64.b64decode(headers["Wechatmp-Signature"]), to_verify, _pss(), hashes.SHA256()
        )
        env = json.loads(body)
        aad = f"{urlpath}|{appid}|{ts}|{self.aes_sn}".encode()
        plain = AESGCM(base64.b64decode(self.aes_key_b64)).decrypt(
            base64.b64decode(env["iv"]),
            base64.b64decode(env["data"]) + base64.b64decode(env["authtag"]),
            aad,
        )
        out: dict[str, Any] = json.loads(plain)
        return out
