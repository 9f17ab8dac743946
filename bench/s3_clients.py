"""Compare the two S3 clients on depot's hit and fill paths against a real S3 (Ceph RGW).

    python bench/s3_clients.py --endpoint http://127.0.0.1:17480 --bucket bench

fill: a 100 MiB blob streamed in 1 MiB chunks as a multipart upload (8 MiB parts);
hit: the same blob read back as a stream, and 1 MiB blobs read 50 times (4 at a time).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Awaitable, Callable

MiB = 1024 * 1024


async def timed(fn: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    start = time.perf_counter()
    nbytes = await fn()
    return time.perf_counter() - start, nbytes


async def bench_obstore(args: argparse.Namespace, big: bytes, small: bytes) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store
    store = S3Store(args.bucket, endpoint=args.endpoint, region="us-east-1", access_key_id="testkey",
                    secret_access_key="testsecret", client_options={"allow_http": True},
                    virtual_hosted_style_request=False)

    async def fill() -> int:
        async def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(big), MiB):
                yield big[i:i + MiB]
        await obstore.put_async(store, "ob/big", chunks(), chunk_size=8 * MiB)
        return len(big)

    async def hit_big() -> int:
        got = 0
        result = await obstore.get_async(store, "ob/big")
        async for chunk in result.stream(min_chunk_size=MiB):
            got += len(chunk)
        return got

    async def hit_small() -> int:
        await obstore.put_async(store, "ob/small", small)
        sem = asyncio.Semaphore(4)

        async def one() -> int:
            async with sem:
                result = await obstore.get_async(store, "ob/small")
                return len(await result.bytes_async())
        return sum(await asyncio.gather(*(one() for _ in range(50))))
    return await run_all(fill, hit_big, hit_small)


async def bench_aiobotocore(args: argparse.Namespace, big: bytes, small: bytes) -> dict[str, float]:
    from aiobotocore.session import get_session
    session = get_session()
    async with session.create_client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                                     aws_access_key_id="testkey", aws_secret_access_key="testsecret") as s3:
        async def fill() -> int:
            up = await s3.create_multipart_upload(Bucket=args.bucket, Key="ab/big")
            parts = []
            for n, i in enumerate(range(0, len(big), 8 * MiB), 1):
                part = await s3.upload_part(Bucket=args.bucket, Key="ab/big", UploadId=up["UploadId"],
                                            PartNumber=n, Body=big[i:i + 8 * MiB])
                parts.append({"PartNumber": n, "ETag": part["ETag"]})
            await s3.complete_multipart_upload(Bucket=args.bucket, Key="ab/big", UploadId=up["UploadId"],
                                               MultipartUpload={"Parts": parts})
            return len(big)

        async def hit_big() -> int:
            got = 0
            obj = await s3.get_object(Bucket=args.bucket, Key="ab/big")
            async with obj["Body"] as body:
                while chunk := await body.read(MiB):
                    got += len(chunk)
            return got

        async def hit_small() -> int:
            await s3.put_object(Bucket=args.bucket, Key="ab/small", Body=small)
            sem = asyncio.Semaphore(4)

            async def one() -> int:
                async with sem:
                    obj = await s3.get_object(Bucket=args.bucket, Key="ab/small")
                    async with obj["Body"] as body:
                        return len(await body.read())
            return sum(await asyncio.gather(*(one() for _ in range(50))))
        return await run_all(fill, hit_big, hit_small)


async def run_all(fill, hit_big, hit_small) -> dict[str, float]:  # type: ignore[no-untyped-def]
    out = {}
    for name, fn in (("fill 100 MiB", fill), ("hit 100 MiB", hit_big), ("hit 50x1 MiB", hit_small)):
        best = min([await timed(fn) for _ in range(3)])
        out[name] = best[1] / MiB / best[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", default="bench")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    from depot.cache.blobs_s3 import S3BlobStore, S3Settings
    big, small = os.urandom(100 * MiB), os.urandom(MiB)
    S3BlobStore(Path(tempfile.mkdtemp()), S3Settings(args.endpoint, args.bucket, access_key="testkey",
                                                     secret_key="testsecret")).ensure_bucket()
    for name, fn in (("obstore", bench_obstore), ("aiobotocore", bench_aiobotocore)):
        figures = asyncio.run(fn(args, big, small))
        print(name.ljust(12), "  ".join(f"{k}: {v:7.1f} MiB/s" for k, v in figures.items()))


if __name__ == "__main__":
    main()
