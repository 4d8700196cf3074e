"""Independent implementation of kube-apiserver's storage encryption formats, for test vectors.

Built from the formats as Kubernetes defines them (k8s.io/apiserver .../value/encrypt), with
Python's `cryptography` and PyNaCl, sharing no code with lockbox.

    vectors.py make        print vectors made here (lockbox must open them)
    vectors.py open        read vectors made by lockbox on stdin, print their plaintexts
"""
import base64
import json
import os
import sys

import nacl.secret
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

b64 = lambda b: base64.b64encode(b).decode()
unb64 = base64.b64decode


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field(num, wire, payload):
    if wire == 2:
        return varint(num << 3 | 2) + varint(len(payload)) + payload
    return varint(num << 3 | 0) + varint(payload)


def encrypted_object(data, key_id, enc_seed, kind):
    """EncryptedObject: 1 encryptedData, 2 keyID, 3 encryptedDEKSource, 5 encryptedDEKSourceType."""
    msg = field(1, 2, data) + field(2, 2, key_id.encode()) + field(3, 2, enc_seed)
    if kind:
        msg += field(5, 0, kind)
    return msg


def parse_object(buf):
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 2:
            n, i = read_varint(buf, i)
            out[num] = buf[i:i + n]
            i += n
        else:
            out[num], i = read_varint(buf, i)
    return out


def read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def kms_dek(seed, info):
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(seed)


def make():
    ctx = "/registry/secrets/ns/vector"
    pt = b'{"kind":"Secret","data":{"k":"dmFsdWU="}}'
    vectors = []
    key = os.urandom(32)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(pt) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    vectors.append({"provider": "aescbc", "key": b64(key), "context": ctx, "plaintext": b64(pt),
                    "stored": b64(b"k8s:enc:aescbc:v1:k1:" + iv + enc.update(padded) + enc.finalize())})
    for size in (16, 24, 32):
        key = os.urandom(size)
        nonce = os.urandom(12)
        vectors.append({"provider": "aesgcm", "key": b64(key), "context": ctx, "plaintext": b64(pt),
                        "stored": b64(b"k8s:enc:aesgcm:v1:k1:" + nonce + AESGCM(key).encrypt(nonce, pt, ctx.encode()))})
    key = os.urandom(32)
    nonce = os.urandom(24)
    sealed = nacl.secret.SecretBox(key).encrypt(pt, nonce)  # nonce || box
    vectors.append({"provider": "secretbox", "key": b64(key), "context": ctx, "plaintext": b64(pt),
                    "stored": b64(b"k8s:enc:secretbox:v1:k1:" + bytes(sealed))})
    seed = os.urandom(32)
    info = os.urandom(32)
    nonce = os.urandom(12)
    data = info + nonce + AESGCM(kms_dek(seed, info)).encrypt(nonce, pt, ctx.encode())
    obj = encrypted_object(data, "vector-key:v1", b"opaque-encrypted-seed", 1)
    vectors.append({"provider": "kms", "key": b64(seed), "context": ctx, "plaintext": b64(pt),
                    "stored": b64(b"k8s:enc:kms:v2:vectors:" + obj)})
    json.dump(vectors, sys.stdout)


def open_one(v):
    stored, key, ctx = unb64(v["stored"]), unb64(v["key"]), v["context"].encode()
    p = v["provider"]
    prefix = {"aescbc": b"k8s:enc:aescbc:v1:k1:", "aesgcm": b"k8s:enc:aesgcm:v1:k1:",
              "secretbox": b"k8s:enc:secretbox:v1:k1:", "kms": b"k8s:enc:kms:v2:vectors:"}[p]
    assert stored.startswith(prefix), (p, stored[:40])
    body = stored[len(prefix):]
    if p == "aescbc":
        dec = Cipher(algorithms.AES(key), modes.CBC(body[:16])).decryptor()
        padded = dec.update(body[16:]) + dec.finalize()
        unpad = padding.PKCS7(128).unpadder()
        return unpad.update(padded) + unpad.finalize()
    if p == "aesgcm":
        return AESGCM(key).decrypt(body[:12], body[12:], ctx)
    if p == "secretbox":
        return nacl.secret.SecretBox(key).decrypt(body)
    obj = parse_object(body)
    assert obj.get(5) == 1, "seed mode"
    data = obj[1]
    dek = kms_dek(key, data[:32])
    return AESGCM(dek).decrypt(data[32:44], data[44:], ctx)


def open_all():
    vectors = json.load(sys.stdin)
    json.dump([b64(open_one(v)) for v in vectors], sys.stdout)


if __name__ == "__main__":
    {"make": make, "open": open_all}[sys.argv[1]]()
