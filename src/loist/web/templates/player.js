(function(){
var $=function(i){return document.getElementById(i)},p=$("player"),a=$("audio"),b=$("play"),s=$("seek"),v=$("vol"),cur=$("cur"),dur=$("dur"),w=$("wf"),pk=null,st=2,sc=128,dragging=false;
function f(x){if(!isFinite(x)||x<0)return"--:--";x=Math.round(x);var h=Math.floor(x/3600),m=Math.floor(x%3600/60),c=x%60;return(h?h+":"+(m<10?"0":""):"")+m+":"+(c<10?"0":"")+c}
function d(){return isFinite(a.duration)?a.duration:0}
function ui(){var on=!a.paused;$("i-play").classList.toggle("hide",on);$("i-pause").classList.toggle("hide",!on);b.setAttribute("aria-label",on?"Pause":"Play")}
function tick(){cur.textContent=f(a.currentTime);if(!dragging&&d())s.value=Math.round(a.currentTime/d()*1000);w.setAttribute("aria-valuenow",Math.round(a.currentTime));draw()}
function draw(){if(!pk)return;var r=window.devicePixelRatio||1,W=Math.round(w.clientWidth*r),H=Math.round(w.clientHeight*r);if(!W||!H)return;if(w.width!==W)w.width=W;if(w.height!==H)w.height=H;
var g=w.getContext("2d"),L=Math.floor(pk.length/st),h=H/2,at=d()?a.currentTime/d()*W:0,x,i,j,lo,hi;g.clearRect(0,0,W,H);
for(x=0;x<W;x++){i=Math.floor(x*L/W);j=Math.max(i+1,Math.floor((x+1)*L/W));lo=0;hi=0;for(;i<j&&i<L;i++){lo=Math.min(lo,pk[i*st]);hi=Math.max(hi,pk[i*st+1])}
g.fillStyle=x<at?"#eee":"#666";g.fillRect(x,h-hi/sc*h,1,Math.max(1,(hi-lo)/sc*h))}}
function wave(){fetch(w.dataset.src).then(function(r){if(!r.ok)throw 0;return r.json()}).then(function(j){if(!j||!j.data||j.version>2)throw 0;pk=j.data;st=2*(j.channels||1);sc=1;pk.forEach(function(x){sc=Math.max(sc,Math.abs(x))});w.classList.remove("hide");p.dataset.waveform="ready";draw()}).catch(function(){p.dataset.waveform="none"})}
function meta(){if(d()){dur.textContent=f(d());p.dataset.duration=d().toFixed(3);p.dataset.state="ready"}}
function toggle(){if(a.paused){var r=a.play();if(r&&r.catch)r.catch(function(){})}else a.pause()}
function seekBy(x){if(d())a.currentTime=Math.max(0,Math.min(d(),a.currentTime+x))}
function volBy(x){a.volume=Math.max(0,Math.min(1,Math.round((a.volume+x)*20)/20));v.value=a.volume}
b.addEventListener("click",toggle);
a.addEventListener("play",ui);a.addEventListener("pause",ui);a.addEventListener("ended",ui);
a.addEventListener("timeupdate",tick);a.addEventListener("loadedmetadata",meta);a.addEventListener("durationchange",meta);
a.addEventListener("error",function(){p.dataset.state="error";$("err").classList.remove("hide")});
s.addEventListener("input",function(){dragging=true;cur.textContent=f(s.value/1000*d())});
s.addEventListener("change",function(){dragging=false;if(d())a.currentTime=s.value/1000*d()});
v.addEventListener("input",function(){a.volume=+v.value});
w.addEventListener("click",function(e){var r=w.getBoundingClientRect();if(d()&&r.width){a.currentTime=Math.max(0,Math.min(1,(e.clientX-r.left)/r.width))*d();tick()}});
window.addEventListener("resize",draw);
document.addEventListener("keydown",function(e){var k=e.key;
if(k===" "||k==="Spacebar"||k==="k"){if(e.target===b&&k!=="k")return;e.preventDefault();toggle()}
else if(k==="ArrowLeft"){e.preventDefault();seekBy(-5)}else if(k==="ArrowRight"){e.preventDefault();seekBy(5)}
else if(k==="ArrowUp"){e.preventDefault();volBy(.1)}else if(k==="ArrowDown"){e.preventDefault();volBy(-.1)}
else if(k==="Home"&&e.target===w){e.preventDefault();seekBy(-d())}else if(k==="End"&&e.target===w){e.preventDefault();seekBy(d())}});
if(a.readyState>0)meta();
if(window.fetch&&w.dataset.src)wave();
})();
