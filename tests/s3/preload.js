// Loaded with `node --require` before s3rver (see tests/common/s3.rs). Two jobs:
//
// 1. The server ends when its standard input, a pipe from the test process, closes: the tests
//    keep one server per process in a static, which is never dropped, and a killed test process
//    drops nothing.
// 2. s3rver 3.7.1's file-system store is made safe under concurrent requests, as a real S3 is:
//    - deleting an object removed its directory when it became empty, so a PUT into the same
//      directory at that moment failed to open its file and the unhandled error ended the whole
//      server; directories are now left in place;
//    - a PUT wrote the object file in place, so a listing or GET at that moment saw a partial
//      object (and rewrote its MD5 from the partial bytes); the object is now written to a
//      temporary file beside it (which listings skip) and renamed into place once its MD5 and
//      metadata are written, so it appears whole or not at all.
'use strict';

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { Transform } = require('stream');

const bin = fs.realpathSync(process.argv[1]);
const store = path.resolve(path.dirname(bin), '..', 'lib', 'stores', 'filesystem.js');
const FilesystemStore = require(store);

FilesystemStore.prototype.deleteObject = async function deleteObject(bucket, key) {
  await Promise.all(
    ['object', 'object.md5', 'metadata.json'].map(resource =>
      fs.promises.unlink(this.getResourcePath(bucket, key, resource)).catch(err => {
        if (err.code !== 'ENOENT') throw err;
      }),
    ),
  );
};

FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
  const tmpPath = `${objectPath}.tmp-${crypto.randomBytes(8).toString('hex')}`;
  try {
    const [size, md5] = await new Promise((resolve, reject) => {
      const writeStream = fs.createWriteStream(tmpPath);
      const md5Context = crypto.createHash('md5');
      let totalLength = 0;
      writeStream.on('error', reject);
      writeStream.on('finish', () => resolve([totalLength, md5Context.digest('hex')]));
      if (Buffer.isBuffer(object.content)) {
        md5Context.update(object.content);
        totalLength = object.content.length;
        writeStream.end(object.content);
      } else {
        object.content
          .on('error', reject)
          .pipe(
            new Transform({
              transform(chunk, encoding, callback) {
                md5Context.update(chunk, encoding);
                totalLength += chunk.length;
                callback(null, chunk);
              },
            }),
          )
          .on('error', reject)
          .pipe(writeStream);
      }
    });
    await this.putMetadata(object.bucket, object.key, object.metadata, md5);
    await fs.promises.rename(tmpPath, objectPath);
    return { size, md5 };
  } catch (err) {
    await fs.promises.unlink(tmpPath).catch(() => {});
    throw err;
  }
};
