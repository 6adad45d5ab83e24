// co-wxapp-open-api, unchanged but for its URL prefixes, as a third-party platform:
// authorization_code -> authorizer tokens -> userPortrait. Prints one JSON line:
// {"auth": <api_query_auth answer>, "portrait": <datacube answer>}.
// Env: BASE, COMPONENT_APPID, COMPONENT_SECRET, TICKET, CODE, BEGIN, END.
'use strict'

const co = require('co')
const API = require('co-wxapp-open-api')
// The package ships the datacube calls but its index does not mix them in.
API.mixin(require('co-wxapp-open-api/lib/api_analysis'))

const env = process.env

function pointed (api) {
  for (const key of Object.keys(api)) {
    if (key.endsWith('refix') && typeof api[key] === 'string') {
      api[key] = api[key].replace('https://api.weixin.qq.com', env.BASE)
    }
  }
  return api
}

co(function * () {
  const api = pointed(new API(env.COMPONENT_APPID, env.COMPONENT_SECRET, '', '', env.TICKET))
  const auth = yield api.queryAuth(env.CODE)
  api.appid = auth.authorization_info.authorizer_appid
  api.authorizer_refresh_token = auth.authorization_info.authorizer_refresh_token
  const portrait = yield api.userPortrait(env.BEGIN, env.END)
  process.stdout.write(JSON.stringify({ auth, portrait }) + '\n')
}).catch(function (err) {
  process.stdout.write(JSON.stringify({ errcode: err.code, errmsg: err.message }) + '\n')
  process.exitCode = 1
})
