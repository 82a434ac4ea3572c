// A recording stand-in for appcmd.exe and icacls.exe, for the Wine suite (IIS cannot run
// here). One binary, installed as %windir%\system32\inetsrv\appcmd.exe and as
// %windir%\system32\icacls.exe in the suite's private prefix; it acts on its file name.
//
// It takes its arguments from GetCommandLineW through CommandLineToArgvW, as Windows hands
// them to appcmd, so a plan line that Windows would split differently fails here too. Every
// call is appended to C:\iis-standin\log.jsonl (the raw command line, the argv, the exit code)
// for the tests to read. The server it models starts as a fresh IIS 10: "Default Web Site"
// (id 1, http/*:80:) in DefaultAppPool, the ISAPI modules installed, the default handler list
// ending in StaticFile, and the default hidden segments. What it answers, including its error
// texts, follows appcmd's output as Microsoft documents it and as users report it.
//
// Control files in C:\iis-standin\ (written by the tests):
//   not-elevated   appcmd answers like a process without administrator rights
//   kill-after     when the command line contains this file's text: apply the command, delete
//                  the file, then terminate the calling process (a killed installer)
//   fail-on        when the command line contains this file's text: answer a commit error
#include <windows.h>
#include <shellapi.h>
#include <tlhelp32.h>

#include <algorithm>
#include <functional>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

using std::wstring;

namespace {

const wchar_t* kDir = L"C:\\iis-standin";

struct Entry {
  wstring kind;  // site, pool, app, cfg, acl, lock
  wstring id;    // cfg: section|location|collection path
  std::vector<std::pair<wstring, wstring>> attrs;
  wstring get(const wstring& k) const {
    for (auto& a : attrs)
      if (_wcsicmp(a.first.c_str(), k.c_str()) == 0) return a.second;
    return L"";
  }
  bool has(const wstring& k) const {
    for (auto& a : attrs)
      if (_wcsicmp(a.first.c_str(), k.c_str()) == 0) return true;
    return false;
  }
  void set(const wstring& k, const wstring& v) {
    for (auto& a : attrs)
      if (_wcsicmp(a.first.c_str(), k.c_str()) == 0) {
        a.second = v;
        return;
      }
    attrs.push_back({k, v});
  }
};

std::vector<Entry> state;
wstring out;

bool ieq(const wstring& a, const wstring& b) { return _wcsicmp(a.c_str(), b.c_str()) == 0; }
wstring lower(wstring s) {
  for (auto& c : s) c = towlower(c);
  return s;
}
wstring path(const wchar_t* file) { return wstring(kDir) + L"\\" + file; }
bool exists(const wstring& p) { return GetFileAttributesW(p.c_str()) != INVALID_FILE_ATTRIBUTES; }

std::string utf8(const wstring& w) {
  if (w.empty()) return {};
  int n = WideCharToMultiByte(CP_UTF8, 0, w.data(), (int)w.size(), nullptr, 0, nullptr, nullptr);
  std::string s(n, '\0');
  WideCharToMultiByte(CP_UTF8, 0, w.data(), (int)w.size(), s.data(), n, nullptr, nullptr);
  return s;
}
wstring wide(const std::string& s) {
  if (s.empty()) return {};
  int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), (int)s.size(), nullptr, 0);
  wstring w(n, L'\0');
  MultiByteToWideChar(CP_UTF8, 0, s.data(), (int)s.size(), w.data(), n);
  return w;
}
// Opened sharing read, write and delete: a reader never makes another call's write or rename
// fail, and is never refused because another call has the file open.
bool readFile(const wstring& p, std::string& s) {
  s.clear();
  HANDLE h = CreateFileW(p.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                         OPEN_EXISTING, 0, nullptr);
  if (h == INVALID_HANDLE_VALUE) return false;
  char buf[65536];
  DWORD n;
  BOOL ok;
  while ((ok = ReadFile(h, buf, sizeof buf, &n, nullptr)) && n) s.append(buf, n);
  CloseHandle(h);
  return ok != FALSE;
}
std::string readFile(const wstring& p) {
  std::string s;
  readFile(p, s);
  return s;
}
void appendFile(const wstring& p, const std::string& s) {
  HANDLE h = CreateFileW(p.c_str(), FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                         OPEN_ALWAYS, 0, nullptr);
  if (h == INVALID_HANDLE_VALUE) return;
  DWORD n;
  WriteFile(h, s.data(), (DWORD)s.size(), &n, nullptr);
  CloseHandle(h);
}

// A call that cannot read or write the server's state stops with a message and exit code 1
// (what appcmd does when applicationHost.config cannot be read), never carrying on as if the
// server were empty: an empty answer to `list app` would make the installer add an
// application the server already has.
[[noreturn]] void stateFailure(const wchar_t* what) {
  wchar_t text[512];
  swprintf(text, 512, L"ERROR ( message:iis-standin cannot %ls C:\\iis-standin\\state.txt (error %lu) )\r\n", what,
           GetLastError());
  std::string o = utf8(text);
  DWORD w;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), o.data(), (DWORD)o.size(), &w, nullptr);
  ExitProcess(1);
}

// The state is replaced whole, as IIS replaces applicationHost.config: written to a file of this
// process's own, flushed, then renamed over the old one. A call that reads it meanwhile (or a
// call killed half-way through writing) sees the old state or the new one, never a part.
void replaceFile(const wstring& p, const std::string& s) {
  wstring tmp = p + L".tmp-" + std::to_wstring(GetCurrentProcessId());
  HANDLE h = CreateFileW(tmp.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS, 0, nullptr);
  if (h == INVALID_HANDLE_VALUE) stateFailure(L"create a temporary file beside");
  DWORD n = 0;
  BOOL ok = WriteFile(h, s.data(), (DWORD)s.size(), &n, nullptr) && n == s.size() && FlushFileBuffers(h);
  CloseHandle(h);
  if (!ok || !MoveFileExW(tmp.c_str(), p.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    DeleteFileW(tmp.c_str());
    stateFailure(L"replace");
  }
}

// State file: one entry a line, fields separated by TAB (values never hold TAB or newline).
void load() {
  std::string text;
  if (!readFile(path(L"state.txt"), text)) stateFailure(L"read");
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    wstring line = wide(text.substr(pos, end - pos));
    pos = end + 1;
    if (line.empty()) continue;
    std::vector<wstring> f;
    size_t a = 0;
    for (;;) {
      size_t t = line.find(L'\t', a);
      f.push_back(line.substr(a, t == wstring::npos ? wstring::npos : t - a));
      if (t == wstring::npos) break;
      a = t + 1;
    }
    Entry e{f[0], f.size() > 1 ? f[1] : L"", {}};
    for (size_t i = 2; i + 1 < f.size(); i += 2) e.attrs.push_back({f[i], f[i + 1]});
    state.push_back(e);
  }
}
void save() {
  std::string s;
  for (auto& e : state) {
    wstring line = e.kind + L"\t" + e.id;
    for (auto& a : e.attrs) line += L"\t" + a.first + L"\t" + a.second;
    s += utf8(line) + "\n";
  }
  replaceFile(path(L"state.txt"), s);
}

wstring cfgId(const wstring& section, const wstring& location, const wstring& collection) {
  return lower(section) + L"|" + lower(location) + L"|" + lower(collection);
}
void addCfg(const wstring& section, const wstring& location, const wstring& collection,
            std::vector<std::pair<wstring, wstring>> attrs) {
  state.push_back({L"cfg", cfgId(section, location, collection), attrs});
}

void fresh() {
  state.push_back({L"site", L"Default Web Site", {{L"id", L"1"}, {L"bindings", L"http/*:80:"}, {L"state", L"Started"}}});
  state.push_back({L"pool", L"DefaultAppPool",
                   {{L"managedRuntimeVersion", L"v4.0"}, {L"managedPipelineMode", L"Integrated"},
                    {L"enable32BitAppOnWin64", L"false"}, {L"processModel.identityType", L"ApplicationPoolIdentity"},
                    {L"state", L"Started"}}});
  state.push_back({L"app", L"Default Web Site/",
                   {{L"applicationPool", L"DefaultAppPool"}, {L"physicalPath", L"%SystemDrive%\\inetpub\\wwwroot"}}});
  for (const wchar_t* m : {L"HttpLoggingModule", L"StaticFileModule", L"DefaultDocumentModule", L"DirectoryListingModule",
                           L"IsapiModule", L"IsapiFilterModule", L"RequestFilteringModule", L"AnonymousAuthenticationModule"})
    addCfg(L"system.webServer/globalModules", L"", L"", {{L"name", m}});
  for (const wchar_t* m : {L"IsapiModule", L"IsapiFilterModule", L"StaticFileModule", L"RequestFilteringModule"})
    addCfg(L"system.webServer/modules", L"", L"", {{L"name", m}});
  addCfg(L"system.webServer/handlers", L"", L"",
         {{L"name", L"ISAPI-dll"}, {L"path", L"*.dll"}, {L"verb", L"*"}, {L"modules", L"IsapiModule"},
          {L"resourceType", L"File"}, {L"requireAccess", L"Execute"}, {L"allowPathInfo", L"true"}});
  addCfg(L"system.webServer/handlers", L"", L"",
         {{L"name", L"StaticFile"}, {L"path", L"*"}, {L"verb", L"*"}, {L"modules", L"StaticFileModule,DefaultDocumentModule,DirectoryListingModule"},
          {L"resourceType", L"Either"}, {L"requireAccess", L"Read"}});
  for (const wchar_t* s : {L"web.config", L"bin", L"App_code", L"App_GlobalResources", L"App_LocalResources",
                           L"App_WebReferences", L"App_Data", L"App_Browsers"})
    addCfg(L"system.webServer/security/requestFiltering", L"", L"hiddenSegments", {{L"segment", s}});
}

Entry* find(const wstring& kind, const wstring& id) {
  for (auto& e : state)
    if (e.kind == kind && ieq(e.id, id)) return &e;
  return nullptr;
}
void erase(const wstring& kind, const wstring& id) {
  state.erase(std::remove_if(state.begin(), state.end(), [&](const Entry& e) { return e.kind == kind && ieq(e.id, id); }),
              state.end());
}

int error(const wstring& message, int code) {
  out += L"ERROR ( message:" + message + L" )\r\n";
  return code;
}

struct Args {
  wstring identifier;
  std::vector<std::pair<wstring, wstring>> params;  // /name:value, in order; name without '/'
  wstring get(const wstring& k) const {
    for (auto& p : params)
      if (ieq(p.first, k)) return p.second;
    return L"";
  }
  bool has(const wstring& k) const {
    for (auto& p : params)
      if (ieq(p.first, k)) return true;
    return false;
  }
};

Args parseArgs(int argc, wchar_t** argv, int from) {
  Args a;
  for (int i = from; i < argc; i++) {
    wstring s = argv[i];
    if (!s.empty() && (s[0] == L'/' || s[0] == L'-') && s.size() > 1) {
      wstring body = s.substr(1);
      // /+expr and /-expr keep their sign as the name; /[..]...:value splits at the last ':'.
      if (body[0] == L'+' || body[0] == L'-') {
        a.params.push_back({body.substr(0, 1), body.substr(1)});
        continue;
      }
      size_t colon = body[0] == L'[' ? body.rfind(L':') : body.find(L':');
      if (colon == wstring::npos) a.params.push_back({body, L""});
      else a.params.push_back({body.substr(0, colon), body.substr(colon + 1)});
    } else if (a.identifier.empty()) {
      a.identifier = s;
    } else {
      a.params.push_back({L"?" + s, L""});
    }
  }
  return a;
}

int unknownAttributes(const Args& a, std::initializer_list<const wchar_t*> known) {
  for (auto& p : a.params) {
    bool ok = false;
    for (auto k : known) ok = ok || ieq(p.first, k);
    if (!ok) {
      if (p.first[0] == L'?') return error(L"Unexpected argument \"" + p.first.substr(1) + L"\".  Replace with -? for help.", 87);
      return error(L"Unknown attribute \"" + p.first + L"\".  Replace with -? for help.", 87);
    }
  }
  return 0;
}

// A collection path such as [@start,name='x',path='y'] or [name='P'].environmentVariables.[name='K']
// or hiddenSegments.[segment='s']: returns the parts, or false when appcmd would call it malformed.
struct Indexer {
  wstring position;
  std::vector<std::pair<wstring, wstring>> attrs;
};
struct Part {
  wstring name;  // a property name, or empty for an indexer
  Indexer index;
};
bool parseExpr(const wstring& s, std::vector<Part>& parts) {
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == L'[') {
      Part p;
      i++;
      for (;;) {
        size_t start = i;
        if (i < s.size() && s[i] == L'@') {
          while (i < s.size() && s[i] != L',' && s[i] != L']') i++;
          p.index.position = s.substr(start, i - start);
        } else {
          size_t eq = s.find(L'=', i);
          if (eq == wstring::npos || eq + 1 >= s.size() || s[eq + 1] != L'\'') return false;
          wstring key = s.substr(i, eq - i);
          size_t close = s.find(L'\'', eq + 2);
          if (close == wstring::npos) return false;
          p.index.attrs.push_back({key, s.substr(eq + 2, close - eq - 2)});
          i = close + 1;
        }
        if (i >= s.size()) return false;
        if (s[i] == L']') {
          i++;
          break;
        }
        if (s[i] != L',') return false;
        i++;
      }
      parts.push_back(p);
    } else {
      size_t dot = s.find_first_of(L".[", i);
      if (dot == wstring::npos) dot = s.size();
      if (dot == i) return false;
      parts.push_back({s.substr(i, dot - i), {}});
      i = dot;
    }
    if (i < s.size() && s[i] == L'.') i++;
  }
  return !parts.empty();
}
const wchar_t* kMalformed =
    L"Malformed collection indexer; format is [@position,name='value',name2='value2',...]. @position is optional, and can "
    L"be '@start', '@end', or '@N' where N is a numeric index into the collection.";

std::vector<wstring> sectionAttrs(const wstring& section) {
  wstring s = lower(section);
  if (s == L"system.webserver/handlers")
    return {L"name", L"path", L"verb", L"modules", L"scriptProcessor", L"resourceType", L"requireAccess", L"preCondition", L"type", L"allowPathInfo", L"responseBufferLimit"};
  if (s == L"system.webserver/security/isapicgirestriction") return {L"path", L"allowed", L"groupId", L"description"};
  if (s == L"system.webserver/isapifilters") return {L"name", L"path", L"enabled", L"enableCache", L"preCondition"};
  if (s == L"system.applicationhost/applicationpools") return {L"name", L"value"};
  if (s == L"system.webserver/security/requestfiltering") return {L"segment"};
  if (s == L"system.webserver/globalmodules" || s == L"system.webserver/modules") return {L"name", L"image", L"preCondition"};
  return {};
}
wstring keyAttr(const wstring& section, const wstring& collection) {
  wstring s = lower(section);
  if (s == L"system.webserver/security/isapicgirestriction") return L"path";
  if (lower(collection) == L"hiddensegments") return L"segment";
  return L"name";
}

bool locked(const wstring& section, const wstring& location) {
  for (auto& e : state)
    if (e.kind == L"lock" && ieq(e.get(L"section"), section)) {
      wstring at = e.get(L"location");
      // A lock at a parent level (server: empty) forbids the section below it.
      if (at.empty() || (lower(location).rfind(lower(at), 0) == 0 && !ieq(location, at))) return true;
    }
  return false;
}
int lockedError(const wstring& location) {
  return error(L"Configuration error \r\nFilename: \\\\?\\C:\\Windows\\system32\\inetsrv\\config\\applicationHost.config\r\n"
               L"Line Number: 0\r\nDescription: This configuration section cannot be used at this path. This happens when the section "
               L"is locked at a parent level. Locking is either by default (overrideModeDefault=\"Deny\"), or set explicitly by a "
               L"location tag with overrideMode=\"Deny\" or the legacy allowOverride=\"false\".\r\n. (location: " + location + L")",
               13);
}

wstring xmlAttrs(const Entry& e) {
  wstring s;
  for (auto& a : e.attrs) s += L" " + a.first + L"=\"" + a.second + L"\"";
  return s;
}

int setConfig(const Args& a) {
  wstring section = a.get(L"section");
  if (section.empty()) return error(L"Must specify the /section parameter.", 87);
  if (sectionAttrs(section).empty()) return error(L"Unknown config section \"" + section + L"\".  Replace with -? for help.", 87);
  wstring location = a.identifier;
  if (!location.empty()) {
    wstring site = location.substr(0, location.find(L'/'));
    if (!find(L"site", site)) return error(L"Cannot find SITE object with identifier \"" + site + L"\".", 1168);
  }
  if (locked(section, location)) return lockedError(location);
  for (auto& p : a.params) {
    if (ieq(p.first, L"section") || ieq(p.first, L"commit")) continue;
    if (p.first == L"+" || p.first == L"-") {
      std::vector<Part> parts;
      if (!parseExpr(p.second, parts) || !parts.back().name.empty()) return error(kMalformed, 87);
      wstring collection;
      for (size_t i = 0; i + 1 < parts.size(); i++) {
        if (parts[i].name.empty()) {
          wstring k = parts[i].index.attrs.empty() ? L"" : parts[i].index.attrs[0].second;
          if (ieq(section, L"system.applicationHost/applicationPools") && !find(L"pool", k))
            return error(L"Cannot find requested collection element.", 1168);
          collection += L"[" + lower(k) + L"]";
        } else {
          collection += (collection.empty() ? L"" : L".") + parts[i].name;
        }
      }
      if (ieq(section, L"system.applicationHost/applicationPools") && collection.empty())
        return error(L"Use appcmd add apppool for application pools.", 87);
      Indexer& ix = parts.back().index;
      auto known = sectionAttrs(section);
      for (auto& kv : ix.attrs) {
        if (std::none_of(known.begin(), known.end(), [&](const wstring& k) { return ieq(k, kv.first); }))
          return error(L"Unknown attribute \"" + kv.first + L"\".  Replace with -? for help.", 87);
      }
      wstring key = keyAttr(section, collection);
      wstring keyValue;
      for (auto& kv : ix.attrs)
        if (ieq(kv.first, key)) keyValue = kv.second;
      if (keyValue.empty()) return error(L"Missing required attribute \"" + key + L"\".", 87);
      wstring id = cfgId(section, location, collection);
      auto same = [&](const Entry& e) { return e.kind == L"cfg" && e.id == id && ieq(e.get(key), keyValue); };
      bool present = std::any_of(state.begin(), state.end(), same);
      if (p.first == L"+") {
        if (present) return error(L"Failed to add duplicate collection element \"" + keyValue + L"\".", 183);
        Entry e{L"cfg", id, ix.attrs};
        if (ix.position == L"@start") {
          auto first = std::find_if(state.begin(), state.end(), [&](const Entry& x) { return x.kind == L"cfg" && x.id == id; });
          state.insert(first, e);
        } else {
          state.push_back(e);
        }
      } else {
        if (!present) return error(L"Cannot find requested collection element.", 1168);
        state.erase(std::remove_if(state.begin(), state.end(), same), state.end());
      }
    } else if (p.first[0] == L'[') {
      // /[name='P'].environmentVariables.[name='K'].value:V
      std::vector<Part> parts;
      if (!parseExpr(p.first, parts) || parts.size() < 2 || parts.back().name.empty()) return error(kMalformed, 87);
      wstring attr = parts.back().name;
      parts.pop_back();
      wstring collection;
      for (size_t i = 0; i + 1 < parts.size(); i++)
        collection += parts[i].name.empty() ? L"[" + lower(parts[i].index.attrs.empty() ? L"" : parts[i].index.attrs[0].second) + L"]"
                                            : (collection.empty() ? L"" : L".") + parts[i].name;
      if (!parts.back().name.empty() || parts.back().index.attrs.empty()) return error(kMalformed, 87);
      wstring id = cfgId(section, location, collection);
      wstring want = parts.back().index.attrs[0].second;
      Entry* hit = nullptr;
      for (auto& e : state)
        if (e.kind == L"cfg" && e.id == id && ieq(e.get(parts.back().index.attrs[0].first), want)) hit = &e;
      if (!hit) return error(L"Cannot find requested collection element.", 1168);
      hit->set(attr, p.second);
    } else if (ieq(section, L"system.webServer/handlers") && ieq(p.first, L"accessPolicy")) {
      wstring id = cfgId(section, location, L"@section");
      Entry* e = find(L"cfg", id);
      if (!e) state.push_back({L"cfg", id, {{L"accessPolicy", p.second}}});
      else e->set(L"accessPolicy", p.second);
    } else {
      return error(L"Unknown attribute \"" + p.first + L"\".  Replace with -? for help.", 87);
    }
  }
  out += L"Applied configuration changes to section \"" + section + L"\" for \"MACHINE/WEBROOT/APPHOST" +
         (location.empty() ? L"" : L"/" + location) + L"\" at configuration commit path \"MACHINE/WEBROOT/APPHOST\"\r\n";
  return 0;
}

int listConfig(const Args& a) {
  wstring section = a.get(L"section");
  if (section.empty()) return error(L"Must specify the /section parameter.", 87);
  wstring location = a.identifier;
  if (locked(section, location)) return lockedError(location);
  wstring tag = section.substr(section.rfind(L'/') + 1);
  wstring text = a.get(L"text");
  wstring policyId = cfgId(section, location, L"@section");
  wstring policy = L"Read, Script";
  for (auto& e : state)
    if (e.kind == L"cfg" && (e.id == policyId || e.id == cfgId(section, L"", L"@section"))) policy = e.get(L"accessPolicy");
  if (!text.empty()) {
    if (ieq(text, L"accessPolicy")) out += policy + L"\r\n";
    return 0;
  }
  // The effective collection: the location's own elements (and its parents'), then the server's.
  std::vector<const Entry*> items;
  std::vector<wstring> scopes;
  for (wstring at = lower(location);; ) {
    scopes.push_back(at);
    if (at.empty()) break;
    size_t slash = at.rfind(L'/');
    at = slash == wstring::npos ? L"" : at.substr(0, slash);
  }
  std::map<wstring, std::vector<const Entry*>> byCollection;
  for (auto& scope : scopes)
    for (auto& e : state) {
      if (e.kind != L"cfg") continue;
      wstring prefix = lower(section) + L"|" + scope + L"|";
      if (e.id.rfind(prefix, 0) != 0) continue;
      wstring collection = e.id.substr(prefix.size());
      if (collection == L"@section") continue;
      byCollection[collection].push_back(&e);
    }
  out += L"<" + tag + (ieq(tag, L"handlers") ? L" accessPolicy=\"" + policy + L"\"" : L"") + L">\r\n";
  for (auto& [collection, list] : byCollection) {
    wstring indent = L"    ";
    if (!collection.empty()) out += L"    <" + collection + L">\r\n", indent = L"        ";
    for (auto* e : list) out += indent + L"<add" + xmlAttrs(*e) + L" />\r\n";
    if (!collection.empty()) out += L"    </" + collection + L">\r\n";
  }
  out += L"</" + tag + L">\r\n";
  return 0;
}

wstring poolLine(const Entry& p) {
  return L"APPPOOL \"" + p.id + L"\" (MgdVersion:" + p.get(L"managedRuntimeVersion") + L",MgdMode:" + p.get(L"managedPipelineMode") +
         L",state:" + p.get(L"state") + L")\r\n";
}

int appcmd(int argc, wchar_t** argv) {
  if (exists(path(L"not-elevated"))) {
    return error(L"Configuration error \r\nFilename: redirection.config\r\nLine Number: 0\r\n"
                 L"Description: Cannot read configuration file due to insufficient permissions\r\n. ",
                 5);
  }
  if (argc < 3) return error(L"Not enough arguments.  Replace with -? for help.", 87);
  wstring verb = lower(argv[1]), object = lower(argv[2]);
  Args a = parseArgs(argc, argv, 3);
  if (object == L"site" && verb == L"list") {
    wstring name = a.has(L"name") ? a.get(L"name") : a.identifier;
    int n = 0;
    for (auto& e : state)
      if (e.kind == L"site" && (name.empty() || ieq(e.id, name))) {
        n++;
        if (a.has(L"text")) out += e.get(a.get(L"text")) + L"\r\n";
        else out += L"SITE \"" + e.id + L"\" (id:" + e.get(L"id") + L",bindings:" + e.get(L"bindings") + L",state:" + e.get(L"state") + L")\r\n";
      }
    if (!n && !a.identifier.empty()) return error(L"Cannot find SITE object with identifier \"" + a.identifier + L"\".", 1168);
    return n ? 0 : 1;
  }
  if (object == L"site" && (verb == L"stop" || verb == L"start")) {
    wstring name = a.has(L"site.name") ? a.get(L"site.name") : a.identifier;
    Entry* site = find(L"site", name);
    if (!site) return error(L"Cannot find SITE object with identifier \"" + name + L"\".", 1168);
    site->set(L"state", verb == L"stop" ? L"Stopped" : L"Started");
    out += L"\"" + name + L"\" successfully " + (verb == L"stop" ? L"stopped" : L"started") + L"\r\n";
    return 0;
  }
  if (object == L"apppool") {
    wstring name = a.has(L"name") ? a.get(L"name") : a.has(L"apppool.name") ? a.get(L"apppool.name") : a.identifier;
    Entry* p = name.empty() ? nullptr : find(L"pool", name);
    if (verb == L"list") {
      if (!p) {
        if (!a.identifier.empty()) return error(L"Cannot find APPPOOL object with identifier \"" + a.identifier + L"\".", 1168);
        return 1;
      }
      if (a.has(L"text")) {
        out += p->get(a.get(L"text")) + L"\r\n";
      } else if (a.has(L"config")) {
        out += L"<add name=\"" + p->id + L"\" managedRuntimeVersion=\"" + p->get(L"managedRuntimeVersion") + L"\">\r\n";
        out += L"  <processModel identityType=\"" + p->get(L"processModel.identityType") + L"\" />\r\n  <environmentVariables>\r\n";
        for (auto& e : state)
          if (e.kind == L"cfg" && e.id == cfgId(L"system.applicationHost/applicationPools", L"", L"[" + lower(p->id) + L"].environmentVariables"))
            out += L"    <add" + xmlAttrs(e) + L" />\r\n";
        out += L"  </environmentVariables>\r\n</add>\r\n";
      } else {
        out += poolLine(*p);
      }
      return 0;
    }
    if (verb == L"add") {
      if (int r = unknownAttributes(a, {L"name", L"managedRuntimeVersion", L"managedPipelineMode", L"enable32BitAppOnWin64", L"processModel.identityType"})) return r;
      if (name.empty()) return error(L"Must specify the /name parameter.", 87);
      if (p) return error(L"Failed to add duplicate collection element \"" + name + L"\".", 183);
      Entry e{L"pool", name, {{L"managedRuntimeVersion", L"v4.0"}, {L"managedPipelineMode", L"Integrated"}, {L"enable32BitAppOnWin64", L"false"},
                              {L"processModel.identityType", L"ApplicationPoolIdentity"}, {L"state", L"Started"}}};
      for (auto& kv : a.params)
        if (!ieq(kv.first, L"name")) e.set(kv.first, kv.second);
      state.push_back(e);
      out += L"APPPOOL object \"" + name + L"\" added\r\n";
      return 0;
    }
    if (!p) return error(L"Cannot find APPPOOL object with identifier \"" + name + L"\".", 1168);
    if (verb == L"delete") {
      erase(L"pool", name);
      out += L"APPPOOL object \"" + name + L"\" deleted\r\n";
      return 0;
    }
    if (verb == L"set") {
      for (auto& kv : a.params) p->set(kv.first, kv.second);
      out += L"APPPOOL object \"" + name + L"\" changed\r\n";
      return 0;
    }
    if (verb == L"stop" || verb == L"start") {
      p->set(L"state", verb == L"stop" ? L"Stopped" : L"Started");
      out += L"\"" + name + L"\" successfully " + (verb == L"stop" ? L"stopped" : L"started") + L"\r\n";
      return 0;
    }
    if (verb == L"recycle") {
      if (ieq(p->get(L"state"), L"Stopped")) return error(L"Application pool \"" + name + L"\" is stopped: cannot recycle it.", 1062);
      out += L"\"" + name + L"\" successfully recycled\r\n";
      return 0;
    }
  }
  if (object == L"app") {
    if (verb == L"add") {
      if (int r = unknownAttributes(a, {L"site.name", L"path", L"physicalPath", L"applicationPool"})) return r;
      wstring site = a.get(L"site.name"), p = a.get(L"path");
      if (!find(L"site", site)) return error(L"Cannot find SITE object with identifier \"" + site + L"\".", 1168);
      if (p.empty() || p[0] != L'/') return error(L"Invalid application path \"" + p + L"\".", 87);
      if (a.get(L"physicalPath").empty()) return error(L"Must specify the /physicalPath parameter.", 87);
      wstring id = site + p;
      if (find(L"app", id)) return error(L"Failed to add duplicate collection element \"" + p + L"\".", 183);
      state.push_back({L"app", id, {{L"applicationPool", a.has(L"applicationPool") ? a.get(L"applicationPool") : L"DefaultAppPool"}, {L"physicalPath", a.get(L"physicalPath")}}});
      out += L"APP object \"" + id + L"\" added\r\nVDIR object \"" + id + L"/\" added\r\n";
      return 0;
    }
    Entry* app = a.identifier.empty() ? nullptr : find(L"app", a.identifier);
    if (verb == L"list") {
      if (a.identifier.empty()) {
        wstring site = a.get(L"site.name");
        for (auto& e : state) {
          if (e.kind != L"app" || (!site.empty() && !ieq(e.id.substr(0, e.id.find(L'/')), site))) continue;
          if (a.has(L"text")) out += e.get(a.get(L"text")) + L"\r\n";
          else out += L"APP \"" + e.id + L"\" (applicationPool:" + e.get(L"applicationPool") + L")\r\n";
        }
        return 0;
      }
      if (!app) return error(L"Cannot find APP object with identifier \"" + a.identifier + L"\".", 1168);
      if (a.has(L"text")) out += app->get(a.get(L"text")) + L"\r\n";
      else out += L"APP \"" + app->id + L"\" (applicationPool:" + app->get(L"applicationPool") + L")\r\n";
      return 0;
    }
    if (!app) return error(L"Cannot find APP object with identifier \"" + a.identifier + L"\".", 1168);
    if (verb == L"delete") {
      erase(L"app", a.identifier);
      out += L"APP object \"" + a.identifier + L"\" deleted\r\n";
      return 0;
    }
    if (verb == L"set") {
      if (int r = unknownAttributes(a, {L"applicationPool", L"physicalPath"})) return r;
      for (auto& kv : a.params) app->set(kv.first, kv.second);
      out += L"APP object \"" + a.identifier + L"\" changed\r\n";
      return 0;
    }
  }
  if (object == L"config") {
    if (verb == L"list") return listConfig(a);
    if (verb == L"set") return setConfig(a);
    if (verb == L"lock" || verb == L"unlock") {
      wstring section = a.get(L"section");
      state.erase(std::remove_if(state.begin(), state.end(), [&](const Entry& e) {
        return e.kind == L"lock" && ieq(e.get(L"section"), section) && ieq(e.get(L"location"), a.identifier); }), state.end());
      if (verb == L"lock") state.push_back({L"lock", section, {{L"section", section}, {L"location", a.identifier}}});
      out += L"Applied configuration changes to section \"" + section + L"\"\r\n";
      return 0;
    }
  }
  return error(L"The verb \"" + verb + L"\" on object \"" + object + L"\" is not supported by this stand-in.", 87);
}

// icacls <path> [/grant "account:(OI)(CI)perm" | /remove:g account]
bool knownAccount(const wstring& account) {
  wstring a = lower(account);
  if (a.rfind(L"iis apppool\\", 0) == 0) return find(L"pool", account.substr(12)) != nullptr;
  for (const wchar_t* k : {L"network service", L"local service", L"nt authority\\network service", L"nt authority\\local service",
                           L"iis_iusrs", L"users", L"everyone", L"builtin\\users", L"builtin\\administrators", L"system"})
    if (a == k) return true;
  return false;
}
int icacls(int argc, wchar_t** argv) {
  if (argc < 2) return out += L"Invalid parameter\r\n", 87;
  wstring target = argv[1];
  if (!exists(target)) {
    out += target + L": The system cannot find the file specified.\r\nSuccessfully processed 0 files; Failed processing 1 files\r\n";
    return 2;
  }
  wstring id = lower(target);
  while (id.size() > 3 && id.back() == L'\\') id.pop_back();
  if (argc == 2) {
    out += target + L" NT AUTHORITY\\SYSTEM:(OI)(CI)(F)\r\n";
    // Stored as granted ("(OI)(CI)RX"), listed as icacls prints it ("(OI)(CI)(RX)").
    for (auto& e : state)
      if (e.kind == L"acl" && ieq(e.get(L"path"), id)) {
        wstring perm = e.get(L"perm");
        size_t simple = perm.rfind(L')');
        simple = simple == wstring::npos ? 0 : simple + 1;
        if (simple < perm.size()) perm = perm.substr(0, simple) + L"(" + perm.substr(simple) + L")";
        // The virtual account of a deleted pool no longer resolves: icacls shows its SID.
        wstring account = knownAccount(e.get(L"account")) ? e.get(L"account") : L"*S-1-5-82-" + std::to_wstring(std::hash<wstring>()(lower(e.get(L"account"))) % 1000000000);
        out += L"    " + account + L":" + perm + L"\r\n";
      }
    out += L"    BUILTIN\\Administrators:(OI)(CI)(F)\r\n\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n";
    return 0;
  }
  if (argc != 4) return out += L"Invalid parameter \"" + wstring(argv[argc - 1]) + L"\"\r\n", 87;
  wstring op = lower(argv[2]), arg = argv[3];
  if (op == L"/grant") {
    size_t colon = arg.rfind(L':');
    if (colon == wstring::npos) return out += L"Invalid parameter \"" + arg + L"\"\r\n", 87;
    wstring account = arg.substr(0, colon);
    if (!knownAccount(account)) {
      out += account + L": No mapping between account names and security IDs was done.\r\nSuccessfully processed 0 files; Failed processing 1 files\r\n";
      return 1332;
    }
    state.erase(std::remove_if(state.begin(), state.end(), [&](const Entry& e) {
      return e.kind == L"acl" && ieq(e.get(L"path"), id) && ieq(e.get(L"account"), account); }), state.end());
    state.push_back({L"acl", id + L"|" + lower(account), {{L"path", id}, {L"account", account}, {L"perm", arg.substr(colon + 1)}}});
  } else if (op == L"/remove:g") {
    if (!knownAccount(arg)) {
      out += arg + L": No mapping between account names and security IDs was done.\r\nSuccessfully processed 0 files; Failed processing 1 files\r\n";
      return 1332;
    }
    state.erase(std::remove_if(state.begin(), state.end(), [&](const Entry& e) {
      return e.kind == L"acl" && ieq(e.get(L"path"), id) && ieq(e.get(L"account"), arg); }), state.end());
  } else {
    return out += L"Invalid parameter \"" + wstring(argv[2]) + L"\"\r\n", 87;
  }
  out += L"processed file: " + target + L"\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n";
  return 0;
}

std::string json(const wstring& w) {
  std::string s = "\"";
  for (unsigned char c : utf8(w)) {
    if (c == '"' || c == '\\') s += '\\', s += (char)c;
    else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      s += b;
    } else s += (char)c;
  }
  return s + "\"";
}

void killParent() {
  DWORD self = GetCurrentProcessId(), parent = 0;
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  PROCESSENTRY32W pe{sizeof pe};
  for (BOOL ok = Process32FirstW(snap, &pe); ok; ok = Process32NextW(snap, &pe))
    if (pe.th32ProcessID == self) parent = pe.th32ParentProcessID;
  CloseHandle(snap);
  HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, parent);
  if (h) TerminateProcess(h, 137), CloseHandle(h);
}

wstring trigger(const wchar_t* file, const wstring& cmdline) {
  std::string t = readFile(path(file));
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  wstring w = wide(t);
  return !w.empty() && cmdline.find(w) != wstring::npos ? w : L"";
}

}  // namespace

int wmain() {
  CreateDirectoryW(kDir, nullptr);
  const wchar_t* cmdline = GetCommandLineW();
  int argc = 0;
  wchar_t** argv = CommandLineToArgvW(cmdline, &argc);
  wchar_t self[MAX_PATH];
  GetModuleFileNameW(nullptr, self, MAX_PATH);
  wstring exe = lower(self);
  exe = exe.substr(exe.rfind(L'\\') + 1);
  bool isIcacls = exe == L"icacls.exe";
  if (!exists(path(L"state.txt"))) fresh();
  else load();
  int code;
  bool kill = !trigger(L"kill-after", cmdline).empty();
  if (!trigger(L"fail-on", cmdline).empty()) {
    code = error(L"Failed to commit configuration changes.\r\n\r\nThe process cannot access the file because it is being used by another process.\r\n", 32);
  } else {
    code = isIcacls ? icacls(argc, argv) : appcmd(argc, argv);
  }
  if (code == 0) save();
  std::string line = "{\"exe\":" + json(isIcacls ? L"icacls" : L"appcmd") + ",\"commandLine\":" + json(cmdline) + ",\"argv\":[";
  for (int i = 1; i < argc; i++) line += (i > 1 ? "," : "") + json(argv[i]);
  line += "],\"exitCode\":" + std::to_string(code) + ",\"output\":" + json(out) + "}\n";
  appendFile(path(L"log.jsonl"), line);
  std::string o = utf8(out);
  DWORD n;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), o.data(), (DWORD)o.size(), &n, nullptr);
  if (kill) {
    DeleteFileW(path(L"kill-after").c_str());
    killParent();
  }
  return code;
}
